"""The channel call and what is recorded from its answer: one receipt per message becomes the
ledger row's final (or next) status. Also the polling of WeCom messages awaiting a staff
member's confirmation."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Delivery
from siyu.channels.base import (
    Channel,
    ChannelError,
    OutboundMessage,
    PendingMessage,
    PollingChannel,
    Receipt,
)
from siyu.language.spec import JourneySpec, Step
from tasks.context import EngineContext
from tasks.optouts import suppress

StepCounts = Counter[str]


def send_chunk(
    ctx: EngineContext,
    channel: Channel,
    chunk: list[tuple[int, int, OutboundMessage]],
    now: datetime,
) -> StepCounts:
    """Send (customer id, attempts so far, message) triples in one channel call and record
    each receipt. The ledger rows are already `sending`."""
    counts: StepCounts = Counter()
    try:
        receipts = channel.send_batch([message for _, _, message in chunk])
    except ChannelError as error:
        receipts = [
            Receipt(
                m.idempotency_key,
                "retry" if error.retryable else "failed",
                code="channel_unavailable",
                detail=str(error),
            )
            for _, _, m in chunk
        ]
    by_key = {r.idempotency_key: r for r in receipts}
    with ctx.sessions() as session, session.begin():
        for customer_id, attempts, message in chunk:
            receipt = by_key.get(message.idempotency_key)
            if receipt is None:  # adapter bug: the row stays `sending` and is sent again
                counts["sending:no_receipt"] += 1
                continue
            counts[record(ctx, session, channel.name, customer_id, receipt, attempts + 1, now)] += 1
    return counts


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
    values: dict[str, Any] = dict(
        provider_code=receipt.code, updated_at=now, provider_message_id=receipt.provider_message_id
    )
    code = receipt.code or receipt.outcome
    if receipt.outcome == "sent":
        values.update(status="sent", reason=None, sent_at=now, next_attempt_at=None)
        label = "sent"
    elif receipt.outcome == "pending":
        values.update(status="pending", reason="awaiting_confirmation", next_attempt_at=None)
        label = "pending"
    elif receipt.outcome == "retry" and attempts < ctx.max_attempts:
        wait = ctx.retry_backoff * (2 ** (attempts - 1))
        if receipt.retry_after:
            wait = max(wait, timedelta(seconds=receipt.retry_after))
        values.update(status="deferred", reason=f"retry:{code}", next_attempt_at=now + wait)
        label = "deferred:retry"
    elif receipt.outcome == "refused":
        values.update(status="skipped", reason=f"refused:{code}", next_attempt_at=None)
        suppress(session, customer_id, channel_name, f"refused:{code} {receipt.detail or ''}", now)
        label = "skipped:refused"
    else:
        gave_up = " after retries" if receipt.outcome == "retry" else ""
        values.update(
            status="failed",
            reason=f"{code}{gave_up}: {receipt.detail or ''}"[:255],
            next_attempt_at=None,
        )
        label = f"failed:{code}"
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
