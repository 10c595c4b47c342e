"""The moments of a backtest: the times at which a tick of the journey can change anything,
so that the backtest ticks there and nowhere else (siyu.simulate.runner).

A tick at `now` (siyu.engine.tick) reads the data up to `now` and its own state; between two
of these moments a tick finds nothing new to do:

    events     an entry event (or segment entry, or calendar firing), an exit or goal event,
               an SMS reply (the opt-out phase): read once from the scratch copy, which no
               tick changes (the backtest imports nothing);
    steps      each enrollment's due time per step: entry + `at`, or the anchor's date plus
               its offset (siyu.engine.timing, as the step computes it), once it is enrolled;
    waits      the earliest `next_attempt_at` of the journey's ledger rows that are waiting
               (quiet hours' end, a cap's window freeing a place, fatigue's pause, a retry);
    re-entry   a minute after an enrollment ends when customers may enter again: the engine
               enrolls an entry event that the ended enrollment was blocking at its next
               tick, which ticking every minute puts a minute later.

    midnights  each local midnight of the journey's zone, when its SQL uses `current_date`
               (the tick's date there: siyu.language.where_clause.to_dialect), which
               changes what its `where:`, `audience:` and `if:` match; the times of events
               read through such a `where:` are read without it (all of the source's
               events: a moment too many costs a tick, one missed changes the result).

A step's deadline (`within`) needs no moment of its own: a message is only ever skipped as
expired by a tick that handles it, at one of the moments above. No journey SQL sees the
tick's time otherwise (the engine binds no `now` into `where:`, `audience:` or `if:`, which
refuse bind markers), so nothing else changes with time alone.

Each moment also says which phases of the tick can have work there (`Moments.phases_at`):
the steps always run; enrollment only at an entry moment; goals and exits at their events'
moments, or when the tick enrolled someone who entered before it (an event since counts for
them); the opt-outs at an SMS reply; completion when a step wrote a row. Left out, these
phases would have found nothing: the backtest's ledger and enrollments are those of the whole
tick at every minute (tests/tools/test_simulate_moments.py).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Subquery

from siyu.engine.bad_data import BadCustomerData
from siyu.engine.conditions import leaves
from siyu.engine.event_sources import CHUNK, filtered_source
from siyu.engine.marketer_sql import marketer_read
from siyu.engine.receipts import StepCounts
from siyu.engine.tick import Phase, PhaseResult
from siyu.engine.timing import step_base, step_offset
from siyu.language.spec import Anchor, CustomerCondition, EventCondition, EventFilter, JourneySpec
from siyu.language.where_clause import uses_current_date
from siyu.segments.compute import segment_entries
from siyu.storage.engine import write_session
from siyu.storage.models import (
    Customer,
    Delivery,
    DeliveryStatus,
    Enrollment,
    Event,
    Journey,
    ReasonCode,
)
from siyu.storage.sources import CUSTOMER_COLUMNS, SOURCES
from siyu.storage.types import as_utc

# The ledger rows a later tick takes up again at their next_attempt_at (siyu.engine.scans).
WAITING = (DeliveryStatus.DEFERRED, DeliveryStatus.SENDING)
MINUTE = timedelta(minutes=1)  # the step of the ticks the backtest is equal to
REENTRY_DELAY = MINUTE
# Why a moment is one: the phases with work there (`Moments.wanted`). A step's due time and a
# waiting row's next attempt need only the steps, which every tick runs.
ENTRY, EXIT, GOAL, REPLY, STEPS = "entry", "exit", "goal", "reply", "steps"
_ENROLLMENT = (Enrollment.id, Enrollment.customer_id, Enrollment.entered_at, Enrollment.entry_key)


class Moments:
    """The moments still ahead of a backtest, in time order. `after_tick` learns those a
    tick creates (its enrollments' due times, its ledger's waits); `next_after` gives the
    next one."""

    def __init__(
        self,
        spec: JourneySpec,
        sessions: sessionmaker[Session],
        start: datetime,
        end: datetime,
        journeys_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        self.sessions = sessions
        self.start, self.end = start, end
        self._heap: list[datetime] = []
        self._kinds: dict[datetime, set[str]] = defaultdict(set)
        self._seen_enrollment = 0  # the highest enrollment id whose steps are timed
        self._breakers_closed = False  # the last breakers phase found every breaker closed
        for kind, moments in event_moments(spec, sessions, start, end, journeys_dir).items():
            for moment in moments:
                self._push(moment, kind)
        if uses_current_date_anywhere(spec):  # what entries, exits and goals match changes
            for moment in midnights(spec.timezone, start, end):
                for kind in (ENTRY, EXIT, GOAL):
                    self._push(moment, kind)

    def _push(self, moment: datetime, kind: str) -> None:
        if not self.start < moment <= self.end:
            return
        if moment not in self._kinds:
            heapq.heappush(self._heap, moment)
        self._kinds[moment].add(kind)

    def next_after(self, now: datetime) -> datetime | None:
        """The first moment after `now`, or None when none is left before the end."""
        while self._heap and self._heap[0] <= now:
            self._kinds.pop(heapq.heappop(self._heap), None)
        return self._heap[0] if self._heap else None

    def phases_at(self, now: datetime) -> Callable[[Phase, Mapping[str, PhaseResult]], bool]:
        """Which phases the tick at `now` runs (siyu.engine.tick.run_tick's `wanted`): every
        phase at the start, then those that can have work at this moment."""
        first = now <= self.start
        kinds = self._kinds.get(now, set())

        late: list[bool] = []  # whether this tick enrolled someone who entered before it

        def entered_before(done: Mapping[str, PhaseResult]) -> bool:
            if not late:
                enrolled = "enroll" in done and done["enroll"].counts["enrolled"] > 0
                late.append(enrolled and self._entered_before(now))
            return late[0]

        def wanted(phase: Phase, done: Mapping[str, PhaseResult]) -> bool:
            if first:
                return True
            if phase.kind == "enroll":
                return ENTRY in kinds
            if phase.kind == "opt-outs":
                return REPLY in kinds
            # an exit or goal event between an entry and this tick counts for it now
            if phase.kind == "goals":
                return GOAL in kinds or entered_before(done)
            if phase.kind == "exits":
                return EXIT in kinds or entered_before(done)
            if phase.kind == "breakers":  # dry-run channels never fail: closed stays closed
                return not self._breakers_closed
            if phase.kind == "older":  # the backtest replays one version, from scratch
                return False
            if phase.kind == "complete":  # only a step's new or changed row completes one
                return any(sum(r.outcomes.values()) for r in done.values())
            return True

        return wanted

    def before_tick(self, now: datetime) -> None:
        """Where ticking every minute leaves the entry events' scan before the tick at `now`:
        the enrollment of the minute before scanned up to it (Journey.enrolled_through), and
        the next scans from there less the late events' window (siyu.engine.entry). Left at
        the last entry moment instead, a scan reaches further back, and an entry event that
        an ended enrollment blocked for longer than the window would still enter."""
        if now <= self.start or ENTRY not in self._kinds.get(now, ()):
            return
        if self.spec.entry.calendar is not None:  # firings are tracked by last_calendar_at
            return
        with write_session(self.sessions) as session:
            session.execute(
                update(Journey)
                .where(
                    Journey.name == self.spec.journey,
                    Journey.version == self.spec.version,
                    Journey.enrolled_through < now - MINUTE,
                )
                .values(enrolled_through=now - MINUTE)
            )

    def _entered_before(self, now: datetime) -> bool:
        """Whether an enrollment made by the tick at `now` (not yet timed) entered before it
        (an entry event from the lookback, or one an ended enrollment was blocking)."""
        with self.sessions() as session:
            found = session.scalar(
                select(Enrollment.id)
                .where(
                    Enrollment.id > self._seen_enrollment,
                    Enrollment.journey_name == self.spec.journey,
                    Enrollment.entered_at < now,
                )
                .limit(1)
            )
        return found is not None

    def after_tick(self, now: datetime, results: Mapping[str, PhaseResult]) -> None:
        if "breakers" in results:
            self._breakers_closed = not results["breakers"].counts
        with self.sessions() as session:
            for moment in self._due_times(session):
                if moment > now:
                    self._push(moment, STEPS)
            waiting = session.scalar(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.journey_name == self.spec.journey,
                    Delivery.status.in_(WAITING),
                    Delivery.next_attempt_at > now,
                )
            )
        if waiting is not None:
            self._push(as_utc(waiting), STEPS)
        if self.spec.entry.reentry_policy != "never" and _ended(results):
            self._push(now + REENTRY_DELAY, ENTRY)

    def _due_times(self, session: Session) -> Iterable[datetime]:
        """Each step's due time for the enrollments made since the last call."""
        rows = session.execute(
            select(*_ENROLLMENT)
            .where(
                Enrollment.journey_name == self.spec.journey,
                Enrollment.id > self._seen_enrollment,
            )
            .order_by(Enrollment.id)
        ).all()
        if not rows:
            return []
        self._seen_enrollment = rows[-1][0]
        times: list[datetime] = []
        anchored = [step for step in self.spec.steps if isinstance(step.at, Anchor)]
        for step in self.spec.steps:
            if not isinstance(step.at, Anchor):
                times += [as_utc(entered) + step.at for _i, _c, entered, _k in rows]
        if anchored:
            times += _anchored_times(session, self.spec, rows)
        return times


def _ended(results: Mapping[str, PhaseResult]) -> bool:
    """Whether the tick ended an enrollment (an exit, a completion, an exit seen by a step)."""
    for result in results.values():
        if result.counts.get("exited") or result.counts.get("completed"):
            return True
        for outcomes in result.sends():
            if _exited(outcomes):
                return True
    return False


def _exited(outcomes: StepCounts) -> bool:
    return any(outcome.code == ReasonCode.EXITED and n for outcome, n in outcomes.items())


def _anchored_times(session: Session, spec: JourneySpec, rows: Sequence[Any]) -> list[datetime]:
    """The due times of the anchored steps (a date column plus an offset) for these
    enrollments, as the step computes them; a row whose date is empty or unusable has none
    (the step skips or fails it at its first tick)."""
    customers: dict[int, dict[str, Any]] = {}
    events: dict[str, dict[str, Any]] = {}
    columns = [getattr(Customer, c) for c in CUSTOMER_COLUMNS]
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        for row in session.execute(select(*columns).where(Customer.id.in_([r[1] for r in part]))):
            customers[row[0]] = dict(zip(CUSTOMER_COLUMNS, row, strict=True))
        if spec.entry.event is not None:
            source = SOURCES[spec.entry.event]
            ids = source.key_ids(r[3] for r in part)
            for found in session.execute(source.select_by_keys(), {"row_ids": ids}).mappings():
                events[found["event_key"]] = dict(found)
    times: list[datetime] = []
    for step in spec.steps:
        if not isinstance(step.at, Anchor):
            continue
        for _id, customer_id, entered_at, entry_key in rows:
            customer = customers.get(customer_id, {})
            zone = customer.get("timezone") or spec.timezone
            event = events.get(entry_key, {})
            try:
                base = step_base(step, as_utc(entered_at), event, customer, zone)
                if base is not None:
                    times.append(base + step_offset(step))
            except (BadCustomerData, ValueError, OverflowError):
                continue
    return times


def event_moments(
    spec: JourneySpec,
    sessions: sessionmaker[Session],
    start: datetime,
    end: datetime,
    journeys_dir: Path | None = None,
) -> dict[str, set[datetime]]:
    """The times in (start, end] of the events a tick of `spec` reacts to, by kind: entries
    (events, segment entries or calendar firings), exits, goals and SMS replies."""
    moments: dict[str, set[datetime]] = {}
    entry = spec.entry
    if entry.calendar is not None:
        zone = ZoneInfo(spec.timezone)
        firings = moments[ENTRY] = set()
        for firing in CronSim(entry.calendar, start.astimezone(zone)):
            if firing > end:
                break
            firings.add(firing.astimezone(UTC))
    else:
        with marketer_read(sessions, spec, "entry.where", journeys_dir) as session:
            source = (
                segment_entries(entry.segment)
                if entry.segment is not None
                else filtered_source(session, _undated(entry.as_filter()), None)
            )
            moments[ENTRY] = _times(session, source, start, end)
    for kind, clause, event_filter in (
        (EXIT, "exit_when.where", spec.exit_when),
        (GOAL, "goal.where", spec.goal),
    ):
        if event_filter is not None:
            with marketer_read(sessions, spec, clause, journeys_dir) as session:
                undated = _undated(event_filter)
                found = _times(session, filtered_source(session, undated, None), start, end)
                moments[kind] = found
    replies = select(Event.occurred_at.label("occurred_at")).where(Event.name == "sms_reply")
    with sessions() as session:
        moments[REPLY] = _times(session, replies.subquery(), start, end)
    return moments


def _undated(event_filter: EventFilter) -> EventFilter:
    """The filter itself, or all of its source's events when its `where:` uses current_date:
    which of them match depends on the tick's date, and no event may be missed."""
    if uses_current_date(event_filter.where):
        return EventFilter(event=event_filter.event)
    return EventFilter(event=event_filter.event, where=event_filter.where)


def uses_current_date_anywhere(spec: JourneySpec) -> bool:
    """Whether any SQL of the journey uses current_date (entry, exit, goal, steps' `if:`)."""
    clauses = [spec.entry.where, spec.entry.audience]
    clauses += [f.where for f in (spec.exit_when, spec.goal) if f is not None]
    for step in spec.steps:
        for leaf in leaves(step.if_) if step.if_ is not None else []:
            if isinstance(leaf, EventCondition):
                clauses.append(leaf.where)
            elif isinstance(leaf, CustomerCondition):
                clauses.append(leaf.customer)
    return any(uses_current_date(clause) for clause in clauses)


def midnights(timezone: str, start: datetime, end: datetime) -> list[datetime]:
    """Each local midnight of `timezone` in (start, end], as UTC: where the date changes. A
    midnight that DST skips gives the transition itself (fold 0 takes the offset before it),
    a repeated one its first occurrence (when the date changed)."""
    zone = ZoneInfo(timezone)
    day = start.astimezone(zone).date()
    found: list[datetime] = []
    while True:
        midnight = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        if midnight > end:
            return found
        if midnight > start:
            found.append(midnight)
        day += timedelta(days=1)


def _times(session: Session, source: Subquery, start: datetime, end: datetime) -> set[datetime]:
    occurred = source.c.occurred_at
    return {
        as_utc(at)
        for at in session.scalars(
            select(occurred).where(occurred > start, occurred <= end).distinct()
        )
    }
