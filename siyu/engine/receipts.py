"""The channel call and what is recorded from its answer: one receipt per message becomes the
ledger row's final (or next) status. Also the polling of WeCom messages awaiting a staff
member's confirmation."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.orm import Session

from siyu.alerts.breaker import config_refused, hold_channel
from siyu.channels.base import (
    Channel,
    ChannelError,
    OutboundMessage,
    PendingMessage,
    PollingChannel,
    Receipt,
)
from siyu.engine.claims import DELIVERIES, executemany_update
from siyu.engine.context import EngineContext
from siyu.engine.optouts import suppress
from siyu.hooks import run_logger
from siyu.language.spec import JourneySpec, Step
from siyu.storage.engine import write_session
from siyu.storage.models import Delivery

StepCounts = Counter[str]
log = logging.getLogger("siyu.engine")


class Outgoing(NamedTuple):
    """A message whose ledger row is committed as `sending`, about to go to the channel."""

    customer_id: int
    delivery_id: int
    attempts: int  # before this one
    message: OutboundMessage


def send_chunk(
    ctx: EngineContext,
    channel: Channel,
    chunk: list[Outgoing],
    now: datetime,
) -> StepCounts:
    """Send a chunk of messages in one channel call and record each receipt."""
    counts: StepCounts = Counter()
    try:
        receipts = channel.send_batch([out.message for out in chunk])
    except ChannelError as error:
        receipts = [channel_error_receipt(out.message.idempotency_key, error) for out in chunk]
    by_key = {r.idempotency_key: r for r in receipts}
    # Receipts with the same values (a batch call's: one status, one BizId) share one UPDATE.
    same: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    held: dict[tuple[str, str], list[int]] = {}  # (reason, code) -> delivery ids
    refusals: list[tuple[int, Receipt]] = []
    for out in chunk:
        receipt = by_key.get(out.message.idempotency_key)
        if receipt is None:  # adapter bug: the row stays `sending` and is sent again
            counts["sending:no_receipt"] += 1
            continue
        values, label = receipt_values(ctx, receipt, out.attempts + 1, now)
        counts[label] += 1
        if receipt.outcome == "held":
            held.setdefault((values["reason"], receipt.code or ""), []).append(out.delivery_id)
            continue
        same.setdefault(tuple(values.items()), []).append(out.delivery_id)
        if receipt.outcome == "refused":
            refusals.append((out.customer_id, receipt))
    with write_session(ctx.sessions) as session:
        record_receipts(session, same)
        for customer_id, receipt in refusals:
            reason = f"refused:{receipt.code or receipt.outcome} {receipt.detail or ''}"
            suppress(session, customer_id, channel.name, reason, now)
        for (reason, code), ids in held.items():
            record_holds(session, ids, reason, code, _hold(ctx, session, channel, reason, now), now)
    for (reason, _code), ids in held.items():
        run_logger(log).warning(
            "channel %s: the provider refused its %s (%s); %d message(s) held, not failed%s: "
            "fix it in the environment / channels.yaml / the journey, the held messages are "
            "sent on a tick after that",
            channel.name,
            "credentials" if reason.startswith("channel_auth") else "configuration",
            reason,
            len(ids),
            ", and the channel's breaker opened" if reason.startswith("channel_auth") else "",
        )
    return counts


def _hold(
    ctx: EngineContext, session: Session, channel: Channel, reason: str, now: datetime
) -> datetime:
    """Until when messages refused with `reason` are held: a refused credential opens the
    channel's breaker (its next probe); another refused setting is tried again after the
    retry back-off. Both raise an alert event."""
    kind, _, code = reason.partition(":")
    if kind == "channel_auth":
        return hold_channel(ctx, session, channel.name, code, now)
    config_refused(session, channel.name, code, now)
    return now + ctx.retry_backoff


def channel_error_receipt(key: str, error: ChannelError) -> Receipt:
    """A whole-channel error as one message's receipt: unreachable is a counted `retry`;
    misconfigured (a refused secret or key) is `held` until an operator fixes it."""
    if error.retryable:
        return Receipt(key, "retry", code="channel_unavailable", detail=str(error))
    code = error.code or "misconfigured"
    return Receipt(key, "held", code=code, detail=str(error), auth=error.auth)


_HOLD = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id.in_(bindparam("ids", expanding=True)), DELIVERIES.c.status == "sending")
    .values(
        status="deferred",
        reason=bindparam("hold_reason"),
        provider_code=bindparam("hold_code"),
        next_attempt_at=bindparam("until"),
        updated_at=bindparam("at"),
        sent_at=None,
        # Not this message's attempt: a wrong secret must not use up its retries.
        attempts=DELIVERIES.c.attempts - 1,
    )
)


def record_holds(
    session: Session, ids: list[int], reason: str, code: str, until: datetime, now: datetime
) -> None:
    """Hold rows `deferred` until `until` (the channel's breaker lets a probe through)."""
    session.connection().execute(
        _HOLD,
        {"ids": ids, "hold_reason": reason, "hold_code": code or None, "until": until, "at": now},
    )


# Only a row still `sending` takes a receipt: a late answer for a row that another worker
# re-sent after the lease and already recorded changes nothing.
_RECEIPT_COLUMNS = (
    "status",
    "reason",
    "updated_at",
    "sent_at",
    "next_attempt_at",
    "provider_code",
    "provider_message_id",
)
_RECORD_MANY = update(DELIVERIES).where(
    DELIVERIES.c.id.in_(bindparam("ids", expanding=True)), DELIVERIES.c.status == "sending"
)
_RECORD_ONE = executemany_update(
    DELIVERIES,
    and_(DELIVERIES.c.id == bindparam("row_id"), DELIVERIES.c.status == "sending"),
    _RECEIPT_COLUMNS,
)


def record_receipts(session: Session, same: dict[tuple[tuple[str, Any], ...], list[int]]) -> None:
    """Write receipts, grouped by their values ({values: delivery ids}): a group of several
    rows is one UPDATE ... WHERE id IN (...), the single rows are one executemany."""
    connection = session.connection()
    singles: list[dict[str, Any]] = []
    for items, ids in same.items():
        if len(ids) == 1:
            singles.append({"row_id": ids[0], **dict(items)})
        else:
            connection.execute(_RECORD_MANY.values(**dict(items)), {"ids": ids})
    if singles:
        connection.execute(_RECORD_ONE, singles)


def receipt_values(
    ctx: EngineContext, receipt: Receipt, attempts: int, now: datetime
) -> tuple[dict[str, Any], str]:
    """The ledger columns one receipt sets, and the outcome label for the counts."""
    code = receipt.code or receipt.outcome
    values: dict[str, Any] = dict(
        provider_code=receipt.code,
        provider_message_id=receipt.provider_message_id,
        updated_at=now,
        sent_at=None,
        next_attempt_at=None,
    )
    if receipt.outcome == "sent":
        values.update(status="sent", reason=None, sent_at=now)
        return values, "sent"
    if receipt.outcome == "pending":
        values.update(status="pending", reason="awaiting_confirmation")
        return values, "pending"
    if receipt.outcome == "retry" and attempts < ctx.max_attempts:
        wait = ctx.retry_backoff * (2 ** (attempts - 1))
        if receipt.retry_after:
            wait = max(wait, timedelta(seconds=receipt.retry_after))
        values.update(status="deferred", reason=f"retry:{code}", next_attempt_at=now + wait)
        return values, "deferred:retry"
    if receipt.outcome == "refused":
        values.update(status="skipped", reason=f"refused:{code}")
        return values, "skipped:refused"
    if receipt.outcome == "held":  # send_chunk: not counted; held until _hold says
        kind = "channel_auth" if receipt.auth else "channel_config"
        wait = now + ctx.retry_backoff
        values.update(status="deferred", reason=f"{kind}:{code}"[:255], next_attempt_at=wait)
        return values, f"deferred:{kind}"
    gave_up = " after retries" if receipt.outcome == "retry" else ""
    values.update(status="failed", reason=f"{code}{gave_up}: {receipt.detail or ''}"[:255])
    return values, f"failed:{code}"


def record(
    ctx: EngineContext,
    session: Session,
    channel_name: str,
    customer_id: int,
    receipt: Receipt,
    attempts: int,
    now: datetime,
) -> str:
    """Write one receipt into its ledger row; returns the outcome label for the counts."""
    values, label = receipt_values(ctx, receipt, attempts, now)
    if receipt.outcome == "refused":
        code = receipt.code or receipt.outcome
        suppress(session, customer_id, channel_name, f"refused:{code} {receipt.detail or ''}", now)
    session.execute(
        update(Delivery).where(Delivery.idempotency_key == receipt.idempotency_key).values(**values)
    )
    return label


def poll_pending(
    ctx: EngineContext, spec: JourneySpec, step: Step, channel: PollingChannel, now: datetime
) -> StepCounts:
    """Ask the provider about messages still awaiting a staff member's confirmation; fail
    those unconfirmed for longer than `pending_timeout`."""
    counts: StepCounts = Counter()
    with ctx.sessions() as session:
        rows = session.execute(
            select(
                Delivery.idempotency_key,
                Delivery.customer_id,
                Delivery.address,
                Delivery.provider_message_id,
                Delivery.updated_at,
            ).where(
                Delivery.journey_name == spec.journey,
                Delivery.step_id == step.id,
                Delivery.status == "pending",
            )
        ).all()
    if not rows:
        return counts
    pending = [PendingMessage(r[0], r[1], r[2] or "", r[3] or "") for r in rows]
    try:
        receipts = channel.check_pending(pending)
    except ChannelError:
        return Counter({"pending": len(rows)})
    by_key = {r.idempotency_key: r for r in receipts}
    with ctx.sessions() as session, session.begin():
        for key, customer_id, _address, _message_id, since in rows:
            receipt = by_key.get(key)
            if receipt is not None and receipt.outcome not in ("pending", "retry"):
                counts[
                    record(ctx, session, step.send, customer_id, receipt, ctx.max_attempts, now)
                ] += 1
            elif now - since > ctx.pending_timeout:
                session.execute(
                    update(Delivery)
                    .where(Delivery.idempotency_key == key)
                    .values(
                        status="failed",
                        reason="not_confirmed: no staff confirmation in time",
                        updated_at=now,
                    )
                )
                counts["failed:not_confirmed"] += 1
            else:
                counts["pending"] += 1
    return counts
