"""One journey step at one moment: select who is due, apply the rules right before the send,
render, write the ledger row, send in batches, record what the channel said.

Order of decisions for each due enrollment (the first that applies wins):

    exited        the exit event happened (checked again here, not only at tick start)
    expired       the step's `within` deadline has passed: skipped, never sent late
    no_consent    a marketing step and no marketing consent
    suppressed    the customer opted out of / refused this channel
    no_address    the customer has no identity on this channel
    quiet_hours   deferred to the end of quiet hours in the customer's time zone
    render_error  the template failed for this customer: failed, the batch goes on
    -> sending    ledger row committed with its idempotency key, then the channel call

Nothing is sent twice: a row is only selected while it has no final status, and a row left
in `sending` by a crash is sent again with the same idempotency key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.orm import Session

from db.models import ChannelIdentity, Consent, Customer, Delivery, Enrollment, Suppression
from db.sources import CUSTOMER_COLUMNS, SOURCES
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
from tasks.enrollment import as_utc, filtered_source
from tasks.ledger import idempotency_key
from tasks.quiet_hours import next_allowed
from tasks.render import render_message

StepCounts = Counter[str]  # "sent", "skipped:no_consent", "deferred:quiet_hours", ...


@dataclass
class Due:
    enrollment_id: int
    customer_id: int
    entered_at: datetime
    entry_key: str
    delivery_id: int | None
    attempts: int
    key: str


def run_step(ctx: EngineContext, spec: JourneySpec, step: Step, now: datetime) -> StepCounts:
    channel = ctx.channels[step.send]
    counts: StepCounts = Counter()
    if isinstance(channel, PollingChannel):
        counts += poll_pending(ctx, spec, step, channel, now)
    last_id = 0
    while True:
        with ctx.sessions() as session:
            batch = select_due(session, spec, step, now, after=last_id, limit=ctx.batch_size)
        if not batch:
            break
        last_id = batch[-1].enrollment_id
        counts += process_batch(ctx, spec, step, channel, batch, now)
    return counts


def select_due(
    session: Session, spec: JourneySpec, step: Step, now: datetime, *, after: int, limit: int
) -> list[Due]:
    query = (
        select(
            Enrollment.id,
            Enrollment.customer_id,
            Enrollment.entered_at,
            Enrollment.entry_key,
            Delivery.id,
            Delivery.attempts,
            Delivery.idempotency_key,
        )
        .outerjoin(
            Delivery, and_(Delivery.enrollment_id == Enrollment.id, Delivery.step_id == step.id)
        )
        .where(
            Enrollment.journey_name == spec.journey,
            Enrollment.status == "active",
            Enrollment.entered_at <= now - step.at,
            Enrollment.id > after,
            or_(
                Delivery.id.is_(None),
                and_(Delivery.status.in_(("deferred", "sending")), Delivery.next_attempt_at <= now),
            ),
        )
        .order_by(Enrollment.id)
        .limit(limit)
    )
    return [
        Due(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5] or 0,
            r[6] or idempotency_key(spec.journey, r[0], step.id),
        )
        for r in session.execute(query)
    ]


@dataclass
class _Facts:
    """What the rules need about a batch's customers, loaded with one query each."""

    customers: dict[int, dict[str, Any]]
    events: dict[str, dict[str, Any]]
    exits: dict[int, datetime]
    consented: set[int]
    suppressed: set[int]
    addresses: dict[int, str]


def _load_facts(
    session: Session,
    spec: JourneySpec,
    step: Step,
    channel: Channel,
    batch: list[Due],
    now: datetime,
) -> _Facts:
    ids = [d.customer_id for d in batch]
    customers = {
        row.id: {c: getattr(row, c) for c in CUSTOMER_COLUMNS}
        for row in session.execute(select(Customer).where(Customer.id.in_(ids))).scalars()
    }
    entry = SOURCES[spec.entry.event].select().subquery("entry")
    events = {
        row["event_key"]: dict(row)
        for row in session.execute(
            select(entry).where(entry.c.event_key.in_([d.entry_key for d in batch]))
        ).mappings()
    }
    exits: dict[int, datetime] = {}
    if spec.exit_when is not None:
        src = filtered_source(session, spec.exit_when)
        for customer_id, occurred_at in session.execute(
            select(src.c.customer_id, src.c.occurred_at).where(
                src.c.customer_id.in_(ids), src.c.occurred_at <= now
            )
        ):
            at = as_utc(occurred_at)
            exits[customer_id] = max(exits.get(customer_id, at), at)
    consented: set[int] = set()
    if step.purpose == "marketing":
        consented = set(
            session.scalars(
                select(Consent.customer_id).where(
                    Consent.customer_id.in_(ids),
                    Consent.purpose == "marketing",
                    Consent.granted.is_(True),
                )
            )
        )
    suppressed = set(
        session.scalars(
            select(Suppression.customer_id).where(
                Suppression.customer_id.in_(ids), Suppression.channel == step.send
            )
        )
    )
    if channel.identity_kind == "customer_id":
        addresses = {i: str(i) for i in ids}
    else:
        addresses = dict(
            session.execute(
                select(ChannelIdentity.customer_id, ChannelIdentity.value).where(
                    ChannelIdentity.customer_id.in_(ids),
                    ChannelIdentity.kind == channel.identity_kind,
                )
            )
            .tuples()
            .all()
        )
    return _Facts(customers, events, exits, consented, suppressed, addresses)


def process_batch(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    channel: Channel,
    batch: list[Due],
    now: datetime,
) -> StepCounts:
    counts: StepCounts = Counter()
    to_send: list[tuple[Due, OutboundMessage]] = []
    with ctx.sessions() as session, session.begin():
        facts = _load_facts(session, spec, step, channel, batch, now)
        for due in batch:
            decision = _decide(ctx, spec, step, due, facts, now)
            status, reason, extra = decision
            if status == "sending":
                message = extra["message"]
                to_send.append((due, message))
                extra = {"content": message.body, "address": message.address}
            _write(session, spec, step, due, status, reason, now, **extra)
            counts[f"{status}:{reason}" if reason else status] += 1
            if reason == "exited":
                session.execute(
                    update(Enrollment)
                    .where(Enrollment.id == due.enrollment_id)
                    .values(
                        status="exited",
                        exited_at=facts.exits[due.customer_id],
                        exit_reason="exit_when",
                    )
                )
    # The `sending` rows are committed before the channel is called: a crash from here on
    # leaves them to be sent again, with the same idempotency key, by the next run.
    counts.pop("sending", None)
    for start in range(0, len(to_send), max(channel.max_batch, 1)):
        chunk = to_send[start : start + channel.max_batch]
        counts += _send_chunk(ctx, channel, chunk, now)
    return counts


def _decide(
    ctx: EngineContext, spec: JourneySpec, step: Step, due: Due, facts: _Facts, now: datetime
) -> tuple[str, str | None, dict[str, Any]]:
    exit_at = facts.exits.get(due.customer_id)
    if exit_at is not None and exit_at > due.entered_at:
        return "skipped", "exited", {}
    if step.within is not None and now > due.entered_at + step.within:
        return "skipped", "expired", {}
    if step.purpose == "marketing" and due.customer_id not in facts.consented:
        return "skipped", "no_consent", {}
    if due.customer_id in facts.suppressed:
        return "skipped", "suppressed", {}
    address = facts.addresses.get(due.customer_id)
    if not address:
        return "skipped", f"no_address:{_identity(ctx, step)}", {}
    customer = facts.customers.get(due.customer_id, {})
    if step.purpose == "marketing":
        until = next_allowed(now, spec.quiet_hours, customer.get("timezone") or spec.timezone)
        if until is not None:
            return "deferred", "quiet_hours", {"next_attempt_at": until}
    context = {
        "customer": customer,
        "event": facts.events.get(due.entry_key, {}),
        "journey": spec.journey,
        "step": step.id,
    }
    rendered = render_message(ctx.templates_dir, step.template, context)
    if rendered.body is None:
        return "failed", f"render_error: {rendered.error}"[:255], {}
    params = {**ctx.channel_params.get(step.send, {}), **step.params}
    message = OutboundMessage(due.key, due.customer_id, address, rendered.body, params)
    return "sending", None, {"message": message}


def _identity(ctx: EngineContext, step: Step) -> str:
    return ctx.channels[step.send].identity_kind


def _write(
    session: Session,
    spec: JourneySpec,
    step: Step,
    due: Due,
    status: str,
    reason: str | None,
    now: datetime,
    *,
    next_attempt_at: datetime | None = None,
    content: str | None = None,
    address: str | None = None,
) -> None:
    attempts = due.attempts + (1 if status == "sending" else 0)
    values: dict[str, Any] = dict(
        status=status,
        reason=reason,
        updated_at=now,
        attempts=attempts,
        next_attempt_at=next_attempt_at if status != "sending" else now,
    )
    if content is not None:
        values.update(content=content, address=address)
    if due.delivery_id is None:
        session.execute(
            insert(Delivery).values(
                enrollment_id=due.enrollment_id,
                journey_name=spec.journey,
                step_id=step.id,
                customer_id=due.customer_id,
                channel=step.send,
                idempotency_key=due.key,
                due_at=due.entered_at + step.at,
                created_at=now,
                **values,
            )
        )
    else:
        session.execute(update(Delivery).where(Delivery.id == due.delivery_id).values(**values))


def _send_chunk(
    ctx: EngineContext, channel: Channel, chunk: list[tuple[Due, OutboundMessage]], now: datetime
) -> StepCounts:
    counts: StepCounts = Counter()
    attempts = {m.idempotency_key: d.attempts + 1 for d, m in chunk}
    try:
        receipts = channel.send_batch([m for _, m in chunk])
    except ChannelError as error:
        receipts = [
            Receipt(
                m.idempotency_key,
                "retry" if error.retryable else "failed",
                code="channel_unavailable",
                detail=str(error),
            )
            for _, m in chunk
        ]
    by_key = {r.idempotency_key: r for r in receipts}
    with ctx.sessions() as session, session.begin():
        for due, message in chunk:
            receipt = by_key.get(message.idempotency_key)
            if receipt is None:  # adapter bug: leave the row `sending`, it is sent again
                counts["sending:no_receipt"] += 1
                continue
            counts[
                _record(
                    ctx, session, channel.name, due, receipt, attempts[message.idempotency_key], now
                )
            ] += 1
    return counts


def _record(
    ctx: EngineContext,
    session: Session,
    channel_name: str,
    due: Due,
    receipt: Receipt,
    attempts: int,
    now: datetime,
) -> str:
    values: dict[str, Any] = dict(
        provider_code=receipt.code, updated_at=now, provider_message_id=receipt.provider_message_id
    )
    label: str
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
        values.update(
            status="deferred",
            reason=f"retry:{receipt.code or 'transient'}",
            next_attempt_at=now + wait,
        )
        label = "deferred:retry"
    elif receipt.outcome == "refused":
        values.update(
            status="skipped", reason=f"refused:{receipt.code or 'refused'}", next_attempt_at=None
        )
        add_suppression(
            session,
            due.customer_id,
            channel_name,
            f"refused:{receipt.code or ''} {receipt.detail or ''}",
            now,
        )
        label = "skipped:refused"
    else:
        gave_up = " after retries" if receipt.outcome == "retry" else ""
        values.update(
            status="failed",
            reason=f"{receipt.code or 'failed'}{gave_up}: {receipt.detail or ''}"[:255],
            next_attempt_at=None,
        )
        label = f"failed:{receipt.code or 'failed'}"
    session.execute(
        update(Delivery).where(Delivery.idempotency_key == receipt.idempotency_key).values(**values)
    )
    return label


def add_suppression(
    session: Session, customer_id: int, channel: str, reason: str, now: datetime
) -> None:
    exists_already = session.scalar(
        select(Suppression.id).where(
            Suppression.customer_id == customer_id, Suppression.channel == channel
        )
    )
    if exists_already is None:
        session.add(
            Suppression(
                customer_id=customer_id, channel=channel, reason=reason[:128], created_at=now
            )
        )
        session.flush()


def poll_pending(
    ctx: EngineContext, spec: JourneySpec, step: Step, channel: PollingChannel, now: datetime
) -> StepCounts:
    """Ask the provider about messages still awaiting a staff member's confirmation."""
    counts: StepCounts = Counter()
    with ctx.sessions() as session:
        rows = session.execute(
            select(
                Delivery.idempotency_key,
                Delivery.customer_id,
                Delivery.address,
                Delivery.provider_message_id,
                Delivery.updated_at,
                Delivery.enrollment_id,
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
        for key, customer_id, _addr, _mid, since, enrollment_id in rows:
            receipt = by_key.get(key)
            due = Due(enrollment_id, customer_id, now, "", None, 0, key)
            if receipt is None or receipt.outcome in ("pending", "retry"):
                if now - since > ctx.pending_timeout:
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
                continue
            counts[_record(ctx, session, step.send, due, receipt, ctx.max_attempts, now)] += 1
    return counts
