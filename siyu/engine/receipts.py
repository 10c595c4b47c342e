"""The channel call and what is recorded from its answer: one receipt per message becomes the
ledger row's final (or next) status. Also the polling of WeCom messages awaiting a staff
member's confirmation."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, NamedTuple

from sqlalchemy import Update, and_, bindparam, select, update
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
from siyu.channels.errors import ProviderFault
from siyu.engine.claims import DELIVERIES, executemany_update, mark_handed_over
from siyu.engine.context import EngineContext
from siyu.engine.optouts import suppress
from siyu.hooks import run_logger
from siyu.language.spec import JourneySpec, Step
from siyu.storage.engine import write_session
from siyu.storage.id_lists import in_ids
from siyu.storage.models import Delivery, DeliveryStatus, ReasonCode

log = logging.getLogger("siyu.engine")


class Outcome(NamedTuple):
    """What became of one due message in a tick: the status its ledger row took and why.
    `note` stands in for the code in the label: a failing provider's own code, or
    `no_receipt` (an adapter that answered nothing for the message)."""

    status: DeliveryStatus | Literal["claimed_elsewhere", "taken_over_after_lease"]
    code: ReasonCode | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        """`skipped:holdout`, `failed:isv.MOBILE_NUMBER_ILLEGAL`, `sent`: how a tick's
        counts are shown (siyu tick, the flow run's artifact)."""
        why = self.note or self.code
        return f"{self.status}:{why}" if why else str(self.status)


StepCounts = Counter[Outcome]
CLAIMED_ELSEWHERE = Outcome("claimed_elsewhere")  # another worker claimed the row first
# Not an outcome of its own but a note beside one: of this tick's messages, those an earlier
# tick left in flight (`sending`, its attempt unfinished) and this one took over after their
# lease ended; the artifact shows them settled (siyu/metrics/tick_summary.py).
TAKEN_OVER = Outcome("taken_over_after_lease")  # its label is tick_summary.TAKEN_OVER_LABEL


def outcome_labels(counts: StepCounts) -> Counter[str]:
    """A step's typed counts as labelled counts, the one place they are formatted."""
    labels: Counter[str] = Counter()
    for outcome, n in counts.items():
        labels[outcome.label] += n
    return labels


class Hold(NamedTuple):
    """Messages the provider refused because of the channel's own settings: held, and why."""

    code: ReasonCode  # channel_auth (a secret or key) or channel_config (another setting)
    provider_code: str


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
    with write_session(ctx.sessions) as session:  # committed before the call (claims.py)
        mark_handed_over(session, [out.delivery_id for out in chunk])
    try:
        receipts = channel.send_batch([out.message for out in chunk])
    except ProviderFault:  # an adapter's bug (it turns a call's fault into receipts): the rows
        raise  # stay `sending`, and nothing guesses whether the call was applied
    except ChannelError as error:
        receipts = [channel_error_receipt(out.message.idempotency_key, error) for out in chunk]
    by_key = {r.idempotency_key: r for r in receipts}
    # Receipts with the same values (a batch call's: one status, one BizId) share one UPDATE.
    same: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    held: dict[Hold, list[int]] = {}  # -> delivery ids
    refusals: list[tuple[int, Receipt]] = []
    for out in chunk:
        receipt = by_key.get(out.message.idempotency_key)
        if receipt is None:  # adapter bug: the row stays `sending` and is sent again
            counts[Outcome(DeliveryStatus.SENDING, note="no_receipt")] += 1
            continue
        values, outcome = receipt_values(ctx, receipt, out.attempts + 1, now)
        counts[outcome] += 1
        if receipt.outcome == "held":
            hold = Hold(values["reason_code"], receipt.code or "")
            held.setdefault(hold, []).append(out.delivery_id)
            continue
        same.setdefault(tuple(values.items()), []).append(out.delivery_id)
        if receipt.outcome == "refused":
            refusals.append((out.customer_id, receipt))
    with write_session(ctx.sessions) as session:
        record_receipts(session, same)
        for customer_id, receipt in refusals:
            reason = f"refused:{receipt.code or receipt.outcome} {receipt.detail or ''}"
            suppress(session, customer_id, channel.name, reason, now)
        for hold, ids in held.items():
            record_holds(session, ids, hold, _hold(ctx, session, channel, hold, now), now)
    in_doubt = counts[Outcome(DeliveryStatus.DEFERRED, ReasonCode.IN_DOUBT)]
    if in_doubt:
        run_logger(log).warning(
            "channel %s: %d message(s) may have been sent and the provider can neither "
            "deduplicate nor look them up: held as in doubt, never sent again blind; check "
            "whether they arrived, then `siyu resolve`",
            channel.name,
            in_doubt,
        )
    for hold, ids in held.items():
        auth = hold.code == ReasonCode.CHANNEL_AUTH
        run_logger(log).warning(
            "channel %s: the provider refused its %s (%s); %d message(s) held, not failed%s: "
            "fix it in the environment / channels.yaml / the journey, the held messages are "
            "sent on a tick after that",
            channel.name,
            "credentials" if auth else "configuration",
            f"{hold.code}:{hold.provider_code or HELD}",
            len(ids),
            ", and the channel's breaker opened" if auth else "",
        )
    return counts


def _hold(
    ctx: EngineContext, session: Session, channel: Channel, hold: Hold, now: datetime
) -> datetime:
    """Until when messages refused with `hold` are held: a refused credential opens the
    channel's breaker (its next probe); another refused setting is tried again after the
    retry back-off. Both raise an alert event."""
    code = hold.provider_code or HELD
    if hold.code == ReasonCode.CHANNEL_AUTH:
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


@cache
def _hold_statement(dialect: str) -> Update:
    return (
        update(DELIVERIES)
        .where(in_ids(DELIVERIES.c.id, "ids", dialect), DELIVERIES.c.status == "sending")
        .values(
            status=DeliveryStatus.DEFERRED,
            reason_code=bindparam("hold_reason"),
            reason_detail=bindparam("hold_detail"),
            provider_code=bindparam("hold_code"),
            next_attempt_at=bindparam("until"),
            updated_at=bindparam("at"),
            sent_at=None,
            # Not this message's attempt: a wrong secret must not use up its retries.
            attempts=DELIVERIES.c.attempts - 1,
        )
    )


def record_holds(
    session: Session, ids: list[int], hold: Hold, until: datetime, now: datetime
) -> None:
    """Hold rows `deferred` until `until` (the channel's breaker lets a probe through)."""
    session.connection().execute(
        _hold_statement(session.get_bind().dialect.name),
        {
            "ids": ids,
            "hold_reason": hold.code,
            "hold_detail": (hold.provider_code or HELD)[:DETAIL_CHARS],
            "hold_code": hold.provider_code or None,
            "until": until,
            "at": now,
        },
    )


# Only a row still `sending` takes a receipt: a late answer for a row that another worker
# re-sent after the lease and already recorded changes nothing.
_RECEIPT_COLUMNS = (
    "status",
    "reason_code",
    "reason_detail",
    "updated_at",
    "sent_at",
    "next_attempt_at",
    "provider_code",
    "provider_message_id",
)


@cache
def _record_many(dialect: str) -> Update:
    return update(DELIVERIES).where(
        in_ids(DELIVERIES.c.id, "ids", dialect), DELIVERIES.c.status == "sending"
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
    many = _record_many(connection.dialect.name)
    singles: list[dict[str, Any]] = []
    for items, ids in same.items():
        if len(ids) == 1:
            singles.append({"row_id": ids[0], **dict(items)})
        else:
            connection.execute(many.values(**dict(items)), {"ids": ids})
    if singles:
        connection.execute(_RECORD_ONE, singles)


def receipt_values(
    ctx: EngineContext, receipt: Receipt, attempts: int, now: datetime
) -> tuple[dict[str, Any], Outcome]:
    """The ledger columns one receipt sets, and its outcome for the counts."""
    code = (receipt.code or receipt.outcome)[:DETAIL_CHARS]
    values: dict[str, Any] = dict(
        provider_code=receipt.code,
        provider_message_id=receipt.provider_message_id,
        updated_at=now,
        sent_at=None,
        next_attempt_at=None,
    )
    if receipt.outcome == "sent":
        values.update(_status(DeliveryStatus.SENT), sent_at=now)
        return values, Outcome(DeliveryStatus.SENT)
    if receipt.outcome == "pending":
        values.update(_status(DeliveryStatus.PENDING, ReasonCode.AWAITING_CONFIRMATION))
        return values, Outcome(DeliveryStatus.PENDING)
    if receipt.outcome == "retry" and attempts < ctx.max_attempts:
        wait = ctx.retry_backoff * (2 ** (attempts - 1))
        if receipt.retry_after:
            wait = max(wait, timedelta(seconds=receipt.retry_after))
        values.update(_status(DeliveryStatus.DEFERRED, ReasonCode.RETRY, code))
        values.update(next_attempt_at=now + wait)
        return values, Outcome(DeliveryStatus.DEFERRED, ReasonCode.RETRY)
    if receipt.outcome == "refused":
        values.update(_status(DeliveryStatus.SKIPPED, ReasonCode.REFUSED, code))
        return values, Outcome(DeliveryStatus.SKIPPED, ReasonCode.REFUSED)
    if receipt.outcome == "unknown":  # no next attempt: a person decides (siyu resolve)
        values.update(_status(DeliveryStatus.DEFERRED, ReasonCode.IN_DOUBT, receipt.detail))
        return values, Outcome(DeliveryStatus.DEFERRED, ReasonCode.IN_DOUBT)
    if receipt.outcome == "held":  # send_chunk: not counted; held until _hold says
        kind = ReasonCode.CHANNEL_AUTH if receipt.auth else ReasonCode.CHANNEL_CONFIG
        values.update(_status(DeliveryStatus.DEFERRED, kind, code))
        values.update(next_attempt_at=now + ctx.retry_backoff)
        return values, Outcome(DeliveryStatus.DEFERRED, kind)
    gave_up = " after retries" if receipt.outcome == "retry" else ""
    # The provider's own code leads the detail, as the provider's words follow it.
    detail = f"{code}{gave_up}: {receipt.detail or ''}"
    values.update(_status(DeliveryStatus.FAILED, ReasonCode.PROVIDER_FAILED, detail))
    return values, Outcome(DeliveryStatus.FAILED, ReasonCode.PROVIDER_FAILED, note=code)


DETAIL_CHARS = 255  # deliveries.reason_detail
HELD = "held"  # the code of a held receipt without the provider's own


def _status(
    status: DeliveryStatus, code: ReasonCode | None = None, detail: str | None = None
) -> dict[str, Any]:
    """The status columns of a ledger row: status, reason code, reason detail."""
    return dict(
        status=status,
        reason_code=code,
        reason_detail=detail[:DETAIL_CHARS] if detail is not None else None,
    )


def record(
    ctx: EngineContext,
    session: Session,
    channel_name: str,
    customer_id: int,
    receipt: Receipt,
    attempts: int,
    now: datetime,
) -> Outcome:
    """Write one receipt into its ledger row; returns its outcome for the counts."""
    values, outcome = receipt_values(ctx, receipt, attempts, now)
    if receipt.outcome == "refused":
        code = receipt.code or receipt.outcome
        suppress(session, customer_id, channel_name, f"refused:{code} {receipt.detail or ''}", now)
    session.execute(
        update(Delivery).where(Delivery.idempotency_key == receipt.idempotency_key).values(**values)
    )
    return outcome


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
                Delivery.status == DeliveryStatus.PENDING,
                # not this tick's own sends: another partition of the step may have sent
                # them a moment ago, and they would be counted twice (seen with Prefect's
                # process pool, where partition 0 can start after partition 1 has sent)
                Delivery.updated_at < now,
            )
        ).all()
    if not rows:
        return counts
    pending = [PendingMessage(r[0], r[1], r[2] or "", r[3] or "") for r in rows]
    try:
        receipts = channel.check_pending(pending)
    except ProviderFault:  # an adapter's bug, as in send_chunk
        raise
    except ChannelError:
        return Counter({Outcome(DeliveryStatus.PENDING): len(rows)})
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
                        **_status(
                            DeliveryStatus.FAILED,
                            ReasonCode.NOT_CONFIRMED,
                            "no staff confirmation in time",
                        ),
                        updated_at=now,
                    )
                )
                counts[Outcome(DeliveryStatus.FAILED, ReasonCode.NOT_CONFIRMED)] += 1
            else:
                counts[Outcome(DeliveryStatus.PENDING)] += 1
    return counts
