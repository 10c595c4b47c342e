"""One journey step at one moment: select who is due, apply the rules right before the send,
render, write the ledger row, send in batches, record what the channel said.

The decisions for each due enrollment, in order (the first that applies wins):

    (not due)      an anchored step whose date is still ahead: nothing is written
    skipped        exited         the exit event happened (checked again here)
    skipped        holdout        the customer is in the journey's holdout
    skipped        no_date:<col>  the anchor's date column is empty
    skipped        expired        the step's `within` deadline has passed; never sent late
    skipped        condition_false  the step's `if:` does not hold now
    skipped        no_consent:<purpose>  a consent purpose the step needs is not granted
    skipped        suppressed     the customer opted out of / refused this channel
    skipped        no_address:<kind>  no identity on this channel
    deferred       circuit_open:<channel>  the channel's circuit breaker is open (siyu.alerts)
    deferred       quiet_hours    until quiet hours end in the customer's time zone
    deferred       fatigue        until the fatigue pause after the last unanswered message
    deferred       cap:<name>     until the frequency cap's window frees a place
    failed         bad_customer_data:<field>  this customer's data cannot be used (a time
                                  zone that does not exist, a date out of range, a value
                                  that does not parse); the batch goes on (siyu/engine/bad_data.py)
    failed         render_error   the template failed for this customer; the batch goes on
    -> sending     ledger row committed with its idempotency key, then the channel call;
                   its receipt sets the final (or next) status (siyu/engine/receipts.py), e.g.
                   deferred channel_auth:<code> when the provider refused the channel's
                   secret or key: held, not counted as an attempt, never failed

Nothing is sent twice: a row is only selected while it has no final status, a worker only
writes and sends the rows it claimed (siyu/engine/claims.py: two workers on the same step split the
rows between them), and a row left in `sending` by a crash is sent again, with the same
idempotency key, once its lease (EngineContext.send_lease, in the tick's clock) has run out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from siyu.alerts.breaker import breaker_settings, circuit_hold
from siyu.channels.base import Channel, OutboundMessage, PollingChannel
from siyu.engine.assignment import pick_variant
from siyu.engine.bad_data import BadCustomerData, customer_zone
from siyu.engine.claims import claim_existing, insert_new, mark_exited, prepare_new, update_claimed
from siyu.engine.conditions import holds
from siyu.engine.context import WHOLE, EngineContext, Partition
from siyu.engine.ledger import idempotency_key
from siyu.engine.pressure import cap_hold, fatigue_hold
from siyu.engine.quiet_hours import next_allowed
from siyu.engine.receipts import Outgoing, StepCounts, poll_pending, send_chunk
from siyu.engine.render import TemplateCache, message_limit, render_message
from siyu.engine.scans import due_rows
from siyu.engine.step_facts import BatchFacts, Due, load_batch_facts
from siyu.engine.timing import step_base, step_offset
from siyu.errors import ConfigError
from siyu.language.spec import Anchor, JourneySpec, Step
from siyu.storage.bulk import Statements
from siyu.storage.engine import read_only_session, write_session
from siyu.unsubscribe import unsubscribe_url


def run_step(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    now: datetime,
    journey_id: int | None = None,
    partition: Partition = WHOLE,
) -> StepCounts:
    """Run `step` for the enrollments of one journey version (`journey_id`; None: all), or
    for one partition of them (enrollment id modulo the partition count)."""
    if ctx.workers is not None and partition.count > 1:
        return ctx.workers.run_step(spec, step, now, journey_id, partition)
    channel = ctx.channels[step.send]
    counts: StepCounts = Counter()
    if isinstance(channel, PollingChannel) and partition.index == 0:
        counts += poll_pending(ctx, spec, step, channel, now)
    templates = TemplateCache(ctx.templates_dir, message_limit(channel))
    last_id = 0
    while True:
        with ctx.sessions() as session:
            batch = select_due(
                session,
                spec,
                step,
                now,
                journey_id,
                after=last_id,
                limit=ctx.batch_size,
                partition=partition,
            )
        if not batch:
            break
        last_id = batch[-1].enrollment_id
        counts += process_batch(ctx, spec, step, channel, batch, now, templates)
    return counts


def select_due(
    session: Session,
    spec: JourneySpec,
    step: Step,
    now: datetime,
    journey_id: int | None,
    *,
    after: int,
    limit: int,
    partition: Partition = WHOLE,
) -> list[Due]:
    """The next `limit` enrollments (by id, after `after`) that can be due for `step`: active,
    old enough (anchored steps are timed per row, in `decide`), and either without a ledger
    row for the step or with one that is claimable again (deferred or sending, with
    next_attempt_at reached). The query (siyu/engine/scans.py) reads only rows that can be due."""
    cutoff = None if isinstance(step.at, Anchor) else now - step.at
    rows = due_rows(
        session,
        spec.journey,
        step.id,
        now,
        cutoff,
        journey_id,
        after=after,
        limit=limit,
        part=partition.index,
        parts=partition.count,
    )
    return [due_from_row(spec, step, r) for r in rows]


def due_from_row(spec: JourneySpec, step: Step, r: Sequence[Any]) -> Due:
    """(enrollment id, customer id, entered_at, entry key, holdout, delivery id, attempts,
    idempotency key) as a Due; a row without a ledger row yet gets its stable key here."""
    return Due(
        r[0],
        r[1],
        r[2],
        r[3],
        bool(r[4]),
        r[5],
        r[6] or 0,
        r[7] or idempotency_key(spec.journey, r[0], step.id),
    )


@dataclass
class Decision:
    status: str | None  # None: not due yet, write nothing
    reason: str | None = None
    next_attempt_at: datetime | None = None
    due_at: datetime | None = None
    message: OutboundMessage | None = None
    variant: str | None = None


def process_batch(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    channel: Channel,
    batch: list[Due],
    now: datetime,
    templates: TemplateCache | None = None,
) -> StepCounts:
    """Decide for every due enrollment (reading only), then claim and write the ledger rows
    in one short write transaction; only the rows this worker claimed are written and sent."""
    with read_only_session(ctx.sessions) as session:  # the journey's own SQL runs in here
        facts = load_batch_facts(session, ctx, spec, step, channel.identity_kind, batch, now)
    probe = breaker_settings(ctx.templates_dir.parent).probe  # alerts.yaml, once per batch
    decided: list[tuple[Due, Decision]] = []
    for due in batch:
        decision = decide(ctx, spec, step, channel, due, facts, now, templates, probe=probe)
        if decision.status is None:
            continue
        if decision.message is not None:
            facts.history.record(due.customer_id, step.send, now)
        decided.append((due, decision))
    counts: StepCounts = Counter()
    to_send: list[Outgoing] = []
    lease_ends = now + ctx.send_lease
    # The new rows' insert is built before the transaction: SQLite has one writer at a time,
    # and the other partitions wait while this one holds the lock.
    dialect = ctx.sessions.kw["bind"].dialect
    new_rows = prepare_new(dialect, new_ledger_rows(spec, step, decided, now, lease_ends))
    with write_session(ctx.sessions) as session:
        claimed = write(session, decided, now, lease_ends, new_rows)
        mark_exited(
            session,
            [
                {"enrollment_id": due.enrollment_id, "exited_at": facts.exits[due.customer_id]}
                for due, decision in decided
                if decision.reason == "exited" and due.enrollment_id in claimed
            ],
        )
    for due, decision in decided:
        if due.enrollment_id not in claimed:
            counts["claimed_elsewhere"] += 1
        elif decision.message is not None:
            delivery_id, attempts = claimed[due.enrollment_id]
            to_send.append(Outgoing(due.customer_id, delivery_id, attempts, decision.message))
        else:
            counts[f"{decision.status}:{(decision.reason or '').split(':')[0]}"] += 1
    # The `sending` rows are committed before the channel is called: a crash from here on
    # leaves them to be sent again, with the same idempotency key, after their lease.
    size = max(channel.max_batch, 1)
    for start in range(0, len(to_send), size):
        counts += send_chunk(ctx, channel, to_send[start : start + size], now)
    return counts


def decide(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    channel: Channel,
    due: Due,
    facts: BatchFacts,
    now: datetime,
    templates: TemplateCache | None = None,
    *,
    probe: int | None = None,
) -> Decision:
    """The decision for one due enrollment. A value of this customer's data the rules
    cannot use fails this row only (`bad_customer_data:<field>`), never the batch."""
    bad = facts.bad.get(due.customer_id) or facts.bad_events.get(due.entry_key)
    if bad is not None:  # a column that could not even be read (siyu/engine/step_facts.py)
        return Decision("failed", BadCustomerData(bad).reason)
    try:
        return _decide(ctx, spec, step, channel, due, facts, now, templates, probe=probe)
    except BadCustomerData as error:
        return Decision("failed", error.reason)


def _decide(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    channel: Channel,
    due: Due,
    facts: BatchFacts,
    now: datetime,
    templates: TemplateCache | None,
    *,
    probe: int | None,
) -> Decision:
    customer = facts.customers.get(due.customer_id, {})
    event = facts.events.get(due.entry_key, {})
    timezone = customer.get("timezone") or spec.timezone
    base = step_base(step, due.entered_at, event, customer, timezone)
    due_at = base + step_offset(step) if base is not None else None
    if due_at is not None and due_at > now:
        return Decision(None)
    exit_at = facts.exits.get(due.customer_id)
    if exit_at is not None and exit_at > due.entered_at:
        return Decision("skipped", "exited", due_at=due_at)
    if due.holdout:
        return Decision("skipped", "holdout", due_at=due_at)
    if base is None:
        column = step.at.from_ if isinstance(step.at, Anchor) else "?"
        return Decision("skipped", f"no_date:{column}")
    if step.within is not None and now > base + step.within:
        return Decision("skipped", "expired", due_at=due_at)
    if (
        step.if_ is not None
        and facts.conditions is not None
        and not holds(
            step.if_,
            facts.conditions,
            enrollment_id=due.enrollment_id,
            customer_id=due.customer_id,
            entered_at=due.entered_at,
            now=now,
        )
    ):
        return Decision("skipped", "condition_false", due_at=due_at)
    missing = [
        p for p in step.consent_purposes if p not in facts.consents.get(due.customer_id, set())
    ]
    if missing:
        return Decision("skipped", f"no_consent:{missing[0]}", due_at=due_at)
    if due.customer_id in facts.suppressed:
        return Decision("skipped", "suppressed", due_at=due_at)
    address = facts.addresses.get(due.customer_id)
    if not address:
        return Decision("skipped", f"no_address:{channel.identity_kind}", due_at=due_at)
    circuit = circuit_hold(ctx, step.send, now, probe)  # the channel's breaker is open
    if circuit is not None:
        return Decision("deferred", circuit[0], next_attempt_at=circuit[1], due_at=due_at)
    if step.purpose == "marketing":
        hold = _pressure_hold(ctx, spec, step, due, facts, now, timezone)
        if hold is not None:
            return Decision("deferred", hold[0], next_attempt_at=hold[1], due_at=due_at)
    # Templates show times in the customer's zone (`localtime`): a zone that does not exist
    # fails this message here, with a reason that does not repeat the value.
    customer_zone(timezone)
    variant = (
        pick_variant(due.customer_id, spec.journey, step.id, step.variants)
        if step.variants
        else None
    )
    template = (variant.template if variant and variant.template else None) or step.template
    context = {
        "customer": customer,
        "event": event,
        "journey": spec.journey,
        "step": step.id,
        "variant": variant.id if variant else None,
        "unsubscribe_url": (
            _unsubscribe_link(due.customer_id, step.send)
            if templates is None or templates.reads(template, "unsubscribe_url")
            else ""
        ),
    }
    rendered = render_message(ctx.templates_dir, template, context, templates)
    variant_id = variant.id if variant else None
    if rendered.body is None:
        return Decision(
            "failed", f"render_error: {rendered.error}"[:255], due_at=due_at, variant=variant_id
        )
    params = {
        **ctx.channel_params.get(step.send, {}),
        **step.params,
        **(variant.params if variant else {}),
    }
    message = OutboundMessage(due.key, due.customer_id, address, rendered.body, params)
    return Decision("sending", due_at=due_at, message=message, variant=variant_id)


def _pressure_hold(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    due: Due,
    facts: BatchFacts,
    now: datetime,
    timezone: str,
) -> tuple[str, datetime] | None:
    """Quiet hours, then fatigue, then frequency caps: (reason, when allowed) or None."""
    until = next_allowed(now, spec.quiet_hours, timezone)
    if until is not None:
        return "quiet_hours", until
    resume = fatigue_hold(ctx.policies, facts.history, due.customer_id, now)
    if resume is not None:
        return "fatigue", resume
    capped = cap_hold(ctx.policies.caps, facts.history, due.customer_id, step.send, now, timezone)
    if capped is not None:
        return f"cap:{capped[0]}", capped[1]
    return None


def _unsubscribe_link(customer_id: int, channel: str) -> str:
    """The signed link, or an empty string when no signing key is configured (a template
    that uses it then renders without it; `siyu validate` warns about such templates)."""
    try:
        return unsubscribe_url(customer_id, channel)
    except ConfigError:
        return ""


def new_ledger_rows(
    spec: JourneySpec,
    step: Step,
    decided: list[tuple[Due, Decision]],
    now: datetime,
    lease_ends: datetime,
) -> list[dict[str, Any]]:
    """The ledger rows of the enrollments in `decided` that have none yet for the step."""
    return [
        dict(
            enrollment_id=due.enrollment_id,
            journey_name=spec.journey,
            step_id=step.id,
            customer_id=due.customer_id,
            channel=step.send,
            purpose=step.purpose,
            idempotency_key=due.key,
            due_at=decision.due_at or now,
            created_at=now,
            provider_code=None,
            provider_message_id=None,
            sent_at=None,
            **_ledger_values(decision, 0, now, lease_ends),
        )
        for due, decision in decided
        if due.delivery_id is None
    ]


def _ledger_values(
    decision: Decision, attempts: int, now: datetime, lease_ends: datetime
) -> dict[str, Any]:
    """The columns a decision sets; `attempts` is the row's count before this decision."""
    sending = decision.status == "sending"
    message = decision.message
    return dict(
        status=decision.status,
        reason=decision.reason,
        updated_at=now,
        attempts=attempts + (1 if sending else 0),
        next_attempt_at=lease_ends if sending else decision.next_attempt_at,
        variant=decision.variant,
        content=message.body if message is not None else None,
        address=message.address if message is not None else None,
    )


def write(
    session: Session,
    decided: list[tuple[Due, Decision]],
    now: datetime,
    lease_ends: datetime,
    new_rows: Statements,
) -> dict[int, tuple[int, int]]:
    """Claim and write the ledger rows of `decided` (see siyu/engine/claims.py): insert the new
    rows (`new_rows`, from new_ledger_rows) and update the existing ones this worker can
    claim. Returns {enrollment id: (delivery id, attempts before this one)} for the rows
    this worker owns now."""
    claimed_rows = claim_existing(
        session, [due.delivery_id for due, _ in decided if due.delivery_id is not None], now
    )
    claimed: dict[int, tuple[int, int]] = {}
    updates: list[dict[str, Any]] = []
    for due, decision in decided:
        if due.delivery_id is not None and due.delivery_id in claimed_rows:
            attempts = claimed_rows[due.delivery_id]
            claimed[due.enrollment_id] = (due.delivery_id, attempts)
            values = _ledger_values(decision, attempts, now, lease_ends)
            updates.append({"row_id": due.delivery_id, **values})
    for enrollment_id, delivery_id in insert_new(session, new_rows).items():
        claimed[enrollment_id] = (delivery_id, 0)
    update_claimed(session, updates)
    return claimed
