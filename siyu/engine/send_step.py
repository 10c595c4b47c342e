"""One journey step at one moment: select who is due, apply the rules right before the send,
render, write the ledger row, send in batches, record what the channel said.

The decisions for each due enrollment, in order (the first that applies wins), as status and
reason (`code:detail`: the ledger's reason_code and reason_detail). `send_rules` decides
(the audience's rules, then the channel's: a Skip, a Defer or a Send), `compose_message`
renders the message of a Send and builds the channel's payload:

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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from siyu.alerts.breaker import breaker_settings, circuit_hold
from siyu.channels.base import UNVERIFIED, Channel, OutboundMessage, PollingChannel
from siyu.engine.assignment import pick_variant
from siyu.engine.bad_data import BadCustomerData, customer_zone
from siyu.engine.claims import (
    QUEUED,
    Claimed,
    claim_existing,
    insert_new,
    mark_exited,
    prepare_new,
    update_claimed,
)
from siyu.engine.conditions import holds
from siyu.engine.context import WHOLE, EngineContext, Partition
from siyu.engine.ledger import idempotency_key
from siyu.engine.pressure import cap_hold, fatigue_hold
from siyu.engine.quiet_hours import next_allowed
from siyu.engine.receipts import (
    CLAIMED_ELSEWHERE,
    TAKEN_OVER,
    Outcome,
    Outgoing,
    StepCounts,
    poll_pending,
    send_chunk,
)
from siyu.engine.render import TemplateCache, message_limit, render_message
from siyu.engine.scans import due_id_span, due_rows
from siyu.engine.step_facts import BatchFacts, Due, load_batch_facts
from siyu.engine.timing import step_base, step_offset
from siyu.errors import ConfigError
from siyu.language.spec import Anchor, JourneySpec, Step, Variant
from siyu.storage.bulk import Statements
from siyu.storage.engine import read_only_session, write_session
from siyu.storage.models import DeliveryStatus, ReasonCode
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
    last_id, upto = 0, None
    cutoff = step_cutoff(step, now)
    if cutoff is not None:
        with ctx.sessions() as session:
            span = due_id_span(session, spec.journey, cutoff, journey_id)
        if span is None:  # no active enrollment is old enough: nothing can be due
            return counts
        last_id, upto = span[0] - 1, span[1]
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
                upto=upto,
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
    upto: int | None = None,
    partition: Partition = WHOLE,
) -> list[Due]:
    """The next `limit` enrollments (by id, after `after`) that can be due for `step`: active,
    old enough (anchored steps are timed per row, in `decide`), and either without a ledger
    row for the step or with one that is claimable again (deferred or sending, with
    next_attempt_at reached). The query (siyu/engine/scans.py) reads only rows that can be due."""
    rows = due_rows(
        session,
        spec.journey,
        step.id,
        now,
        step_cutoff(step, now),
        journey_id,
        after=after,
        limit=limit,
        upto=upto,
        part=partition.index,
        parts=partition.count,
    )
    return [due_from_row(spec, step, r) for r in rows]


def step_cutoff(step: Step, now: datetime) -> datetime | None:
    """The latest entry time of an enrollment the step can be due for; None for a step
    anchored on a date (timed per row, in `decide`)."""
    return None if isinstance(step.at, Anchor) else now - step.at


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


@dataclass(frozen=True)
class Skip:
    """The rules say: do not send, and never try again (a `skipped` row)."""

    code: ReasonCode
    detail: str | None = None


@dataclass(frozen=True)
class Defer:
    """The rules say: not now; try again at `until` (a `deferred` row)."""

    until: datetime
    code: ReasonCode
    detail: str | None = None


@dataclass(frozen=True)
class Send:
    """The rules say: send now, to `address` (the customer's identity on the channel)."""

    address: str


NOT_DUE = None  # an anchored step whose date is still ahead: nothing is written
Verdict = Skip | Defer | Send | None


@dataclass
class Decision:
    """What is written into the ledger row for one due enrollment (status None: nothing)."""

    status: DeliveryStatus | None
    code: ReasonCode | None = None
    detail: str | None = None
    next_attempt_at: datetime | None = None
    due_at: datetime | None = None
    message: OutboundMessage | None = None
    variant: str | None = None

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.status or DeliveryStatus.SENDING, self.code)


@dataclass(frozen=True)
class StepBatch:
    """What every decision of one batch shares: the step, its channel, the batch's facts."""

    ctx: EngineContext
    spec: JourneySpec
    step: Step
    channel: Channel
    facts: BatchFacts
    now: datetime
    templates: TemplateCache | None = None
    probe: int | None = None  # the breaker's half-open probe size, read once per batch


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
    scope = StepBatch(ctx, spec, step, channel, facts, now, templates, probe)
    decided: list[tuple[Due, Decision]] = []
    for due in batch:
        decision = decide(scope, due)
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
                if decision.code == ReasonCode.EXITED and due.enrollment_id in claimed
            ],
        )
    for due, decision in decided:
        if due.enrollment_id not in claimed:
            counts[CLAIMED_ELSEWHERE] += 1
            continue
        if claimed[due.enrollment_id][1].lease_lapsed:
            counts[TAKEN_OVER] += 1
        if decision.message is not None:
            delivery_id, found = claimed[due.enrollment_id]
            message = decision.message
            if found.in_doubt_since is not None:  # an earlier attempt may have sent it
                message = replace(message, in_doubt_since=found.in_doubt_since)
            to_send.append(Outgoing(due.customer_id, delivery_id, found.attempts, message))
        else:
            counts[decision.outcome] += 1
    # The `sending` rows are committed before the channel is called: a crash from here on
    # leaves them to be sent again, with the same idempotency key, after their lease.
    size = max(channel.max_batch, 1)
    for start in range(0, len(to_send), size):
        counts += send_chunk(ctx, channel, to_send[start : start + size], now)
    return counts


def decide(scope: StepBatch, due: Due) -> Decision:
    """The decision for one due enrollment: the rules, then (to send) the message. A value
    of this customer's data the rules cannot use fails this row only
    (`bad_customer_data:<field>`), never the batch."""
    facts = scope.facts
    bad = facts.bad.get(due.customer_id) or facts.bad_events.get(due.entry_key)
    if bad is not None:  # a column that could not even be read (siyu/engine/step_facts.py)
        return _bad_data(BadCustomerData(bad))
    try:
        due_at, timezone, verdict = send_rules(scope, due)
        if isinstance(verdict, Send):
            return compose_message(scope, due, verdict.address, timezone, due_at)
    except BadCustomerData as error:
        return _bad_data(error)
    return _held_back(verdict, due_at)


def _held_back(verdict: Skip | Defer | None, due_at: datetime | None) -> Decision:
    """The ledger row of a verdict other than Send (None: not due, nothing is written)."""
    if isinstance(verdict, Skip):
        # no_date has no due date to record (the anchor's column is empty)
        recorded = None if verdict.code == ReasonCode.NO_DATE else due_at
        return Decision(DeliveryStatus.SKIPPED, verdict.code, verdict.detail, due_at=recorded)
    if isinstance(verdict, Defer):
        return Decision(
            DeliveryStatus.DEFERRED,
            verdict.code,
            verdict.detail,
            next_attempt_at=verdict.until,
            due_at=due_at,
        )
    return Decision(None)


def _bad_data(error: BadCustomerData) -> Decision:
    return Decision(DeliveryStatus.FAILED, ReasonCode.BAD_CUSTOMER_DATA, error.field)


def send_rules(scope: StepBatch, due: Due) -> tuple[datetime | None, str, Verdict]:
    """The rules right before the send, in order, the first that applies wins (see the
    module's docstring): (the due date, the customer's time zone, the verdict)."""
    step, facts, now = scope.step, scope.facts, scope.now
    customer = facts.customers.get(due.customer_id, {})
    timezone = customer.get("timezone") or scope.spec.timezone
    base = step_base(step, due.entered_at, facts.events.get(due.entry_key, {}), customer, timezone)
    due_at = base + step_offset(step) if base is not None else None
    if due_at is not None and due_at > now:
        return due_at, timezone, NOT_DUE
    verdict = _audience_rules(scope, due, base) or _channel_rules(scope, due, timezone)
    return due_at, timezone, verdict


def _audience_rules(scope: StepBatch, due: Due, base: datetime | None) -> Skip | None:
    """Whether this customer is still meant to get this step: exit, holdout, date, deadline,
    condition, consent."""
    step, facts, now = scope.step, scope.facts, scope.now
    exit_at = facts.exits.get(due.customer_id)
    if exit_at is not None and exit_at > due.entered_at:
        return Skip(ReasonCode.EXITED)
    if due.holdout:
        return Skip(ReasonCode.HOLDOUT)
    if base is None:
        return Skip(ReasonCode.NO_DATE, step.at.from_ if isinstance(step.at, Anchor) else "?")
    if step.within is not None and now > base + step.within:
        return Skip(ReasonCode.EXPIRED)
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
        return Skip(ReasonCode.CONDITION_FALSE)
    granted = facts.consents.get(due.customer_id, set())
    missing = [p for p in step.consent_purposes if p not in granted]
    if missing:
        return Skip(ReasonCode.NO_CONSENT, missing[0])
    return None


def _channel_rules(scope: StepBatch, due: Due, timezone: str) -> Skip | Defer | Send:
    """Whether the channel can take the message now: opt-out, address, breaker, quiet
    hours, fatigue, caps."""
    ctx, step, facts, now = scope.ctx, scope.step, scope.facts, scope.now
    if due.customer_id in facts.suppressed:
        return Skip(ReasonCode.SUPPRESSED)
    address = facts.addresses.get(due.customer_id)
    if not address:
        return Skip(ReasonCode.NO_ADDRESS, scope.channel.identity_kind)
    circuit = circuit_hold(ctx, step.send, now, scope.probe)  # the channel's breaker is open
    if circuit is not None:
        return Defer(circuit, ReasonCode.CIRCUIT_OPEN, step.send)
    if step.purpose == "marketing":
        hold = _pressure_hold(ctx, scope.spec, step, due, facts, now, timezone)
        if hold is not None:
            return hold
    return Send(address)


def compose_message(
    scope: StepBatch, due: Due, address: str, timezone: str, due_at: datetime | None
) -> Decision:
    """The message for a customer the rules let through: its variant, the template
    rendered in the customer's context, and the channel's payload (`sending`); or the
    template's failure for this customer (`failed render_error`)."""
    spec, step = scope.spec, scope.step
    # Templates show times in the customer's zone (`localtime`): a zone that does not exist
    # fails this message here, with a reason that does not repeat the value.
    customer_zone(timezone)
    variant = (
        pick_variant(due.customer_id, spec.journey, step.id, step.variants)
        if step.variants
        else None
    )
    variant_id = variant.id if variant else None
    template = (variant.template if variant and variant.template else None) or step.template
    context = _render_context(scope, due, template, variant_id)
    rendered = render_message(scope.ctx.templates_dir, template, context, scope.templates)
    if rendered.body is None:
        return Decision(
            DeliveryStatus.FAILED,
            ReasonCode.RENDER_ERROR,
            rendered.error,
            due_at=due_at,
            variant=variant_id,
        )
    message = channel_payload(scope, due, address, rendered.body, variant)
    return Decision(DeliveryStatus.SENDING, due_at=due_at, message=message, variant=variant_id)


def channel_payload(
    scope: StepBatch, due: Due, address: str, body: str, variant: Variant | None
) -> OutboundMessage:
    """The message as the channel adapter takes it: the channel's parameters from
    channels.yaml, overridden by the step's, then by the variant's."""
    params = {
        **scope.ctx.channel_params.get(scope.step.send, {}),
        **scope.step.params,
        **(variant.params if variant else {}),
    }
    return OutboundMessage(due.key, due.customer_id, address, body, params)


def _render_context(
    scope: StepBatch, due: Due, template: str, variant_id: str | None
) -> dict[str, Any]:
    """What a template sees: the customer, the entry event, where it is sent from, and the
    signed unsubscribe link when the template uses it."""
    step, templates = scope.step, scope.templates
    return {
        "customer": scope.facts.customers.get(due.customer_id, {}),
        "event": scope.facts.events.get(due.entry_key, {}),
        "journey": scope.spec.journey,
        "step": step.id,
        "variant": variant_id,
        "unsubscribe_url": (
            _unsubscribe_link(due.customer_id, step.send)
            if templates is None or templates.reads(template, "unsubscribe_url")
            else ""
        ),
    }


def _pressure_hold(
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    due: Due,
    facts: BatchFacts,
    now: datetime,
    timezone: str,
) -> Defer | None:
    """Quiet hours, then fatigue, then frequency caps: until when the message waits."""
    until = next_allowed(now, spec.quiet_hours, timezone)
    if until is not None:
        return Defer(until, ReasonCode.QUIET_HOURS)
    resume = fatigue_hold(ctx.policies, facts.history, due.customer_id, now)
    if resume is not None:
        return Defer(resume, ReasonCode.FATIGUE)
    capped = cap_hold(ctx.policies.caps, facts.history, due.customer_id, step.send, now, timezone)
    if capped is not None:
        return Defer(capped[1], ReasonCode.CAP, capped[0])
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
            provider_message_id=None,
            sent_at=None,
            **_ledger_values(decision, 0, now, lease_ends),
        )
        for due, decision in decided
        if due.delivery_id is None
    ]


def _ledger_values(
    decision: Decision,
    attempts: int,
    now: datetime,
    lease_ends: datetime,
    in_doubt: bool = False,
) -> dict[str, Any]:
    """The columns a decision sets; `attempts` is the row's count before this decision. A row
    to send waits `queued` for its call, or keeps its doubt (`in_doubt`: an earlier attempt
    may have sent it) until the provider is asked; other decisions keep the row's code."""
    sending = decision.status == DeliveryStatus.SENDING
    message = decision.message
    return dict(
        status=decision.status,
        reason_code=decision.code,
        reason_detail=decision.detail[:255] if decision.detail is not None else None,
        updated_at=now,
        attempts=attempts + (1 if sending else 0),
        next_attempt_at=lease_ends if sending else decision.next_attempt_at,
        variant=decision.variant,
        content=message.body if message is not None else None,
        address=message.address if message is not None else None,
        provider_code=(UNVERIFIED if in_doubt else QUEUED) if sending else None,
    )


def write(
    session: Session,
    decided: list[tuple[Due, Decision]],
    now: datetime,
    lease_ends: datetime,
    new_rows: Statements,
) -> dict[int, tuple[int, Claimed]]:
    """Claim and write the ledger rows of `decided` (see siyu/engine/claims.py): insert the new
    rows (`new_rows`, from new_ledger_rows) and update the existing ones this worker can
    claim. Returns {enrollment id: (delivery id, what the claim found)} for the rows this
    worker owns now."""
    claimed_rows = claim_existing(
        session, [due.delivery_id for due, _ in decided if due.delivery_id is not None], now
    )
    claimed: dict[int, tuple[int, Claimed]] = {}
    updates: list[dict[str, Any]] = []
    for due, decision in decided:
        if due.delivery_id is not None and due.delivery_id in claimed_rows:
            found = claimed_rows[due.delivery_id]
            claimed[due.enrollment_id] = (due.delivery_id, found)
            in_doubt = found.in_doubt_since is not None
            values = _ledger_values(decision, found.attempts, now, lease_ends, in_doubt)
            updates.append({"row_id": due.delivery_id, **values})
    for enrollment_id, delivery_id in insert_new(session, new_rows).items():
        claimed[enrollment_id] = (delivery_id, Claimed(0, None))
    update_claimed(session, updates)
    return claimed
