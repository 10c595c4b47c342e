"""Who enters a journey: new entrants of its entry event (or segment), or its audience at each
firing of a calendar, under the re-entry policy, with the holdout assigned.

All set-based SQL over the event sources (siyu.storage.sources); nothing here sends anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import and_, exists, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Subquery

from siyu.engine.assignment import in_holdout
from siyu.engine.claims import ENROLLMENTS, insert_returning_ids
from siyu.engine.event_sources import CHUNK, LATE_EVENTS, filtered_source
from siyu.engine.marketer_sql import marketer_read
from siyu.engine.versions import ensure_journey, lock_journey
from siyu.language.spec import JourneySpec, ReentryAfter
from siyu.language.where_clause import tick_date, to_dialect
from siyu.segments.compute import segment_entries
from siyu.storage.engine import write_session
from siyu.storage.models import Customer, Enrollment, Journey
from siyu.storage.types import as_utc


def enroll_entrants(
    sessions: sessionmaker[Session],
    spec: JourneySpec,
    now: datetime,
    late_events: timedelta = LATE_EVENTS,
    journeys_dir: Path | None = None,
) -> int:
    """Enroll new entrants: customers whose entry event happened since activation (minus the
    entry lookback), or, for calendar journeys, the audience at each cron firing. The re-entry
    policy decides who may enter again; one enrollment per customer per tick.

    Three transactions: the journey's version row (write); the candidates, found with the
    journey's own `where:`/`audience:` (read-only, under the statement timeout, holding no
    write lock); their enrollments (write, re-checking who entered meanwhile)."""
    with write_session(sessions) as session:
        lock_journey(session, spec.journey)
        journey = ensure_journey(session, spec, now)
    if spec.entry.calendar is not None:
        return _enroll_calendar(sessions, spec, journey, now, journeys_dir)
    with marketer_read(sessions, spec, "entry.where", journeys_dir) as session:
        picks = _entry_candidates(session, spec, journey, now, late_events)
    with write_session(sessions) as session:
        lock_journey(session, spec.journey)
        current = session.get(Journey, journey.id)
        if current is not None:
            current.enrolled_through = max(current.enrolled_through or now, now)
        blocked = _entered_meanwhile(session, spec, [pick[1] for pick in picks])
        rows = [
            _enrollment_row(spec, journey, customer_id, event_key, occurred_at, now)
            for event_key, customer_id, occurred_at in picks
            if customer_id not in blocked
        ]
        return sum(
            _insert(session, rows[start : start + CHUNK]) for start in range(0, len(rows), CHUNK)
        )


def _entry_candidates(
    session: Session, spec: JourneySpec, journey: Journey, now: datetime, late_events: timedelta
) -> list[tuple[str, int, Any]]:
    """(event key, customer id, occurred at) of each customer who may enter now (read only)."""
    src = _entry_source(session, spec, now)
    since = journey.activated_at - spec.entry.lookback
    if journey.enrolled_through is not None:  # earlier events were scanned by earlier ticks
        since = max(since, journey.enrolled_through - late_events)
    mine = and_(
        Enrollment.journey_name == spec.journey, Enrollment.customer_id == src.c.customer_id
    )
    policy = spec.entry.reentry_policy
    if policy == "never":
        blocked = exists().where(mine)
    else:  # one enrollment at a time, and never twice for the same event
        blocked = exists().where(
            mine, or_(Enrollment.status == "active", Enrollment.entry_key == src.c.event_key)
        )
    gap = policy.after if isinstance(policy, ReentryAfter) else None
    last_entry = _last_entries(session, spec) if gap is not None else {}
    rows = session.execute(
        select(src.c.event_key, src.c.customer_id, src.c.occurred_at)
        # `>=`: an event at the first tick's own moment (the activation) counts
        .where(src.c.occurred_at >= since, src.c.occurred_at <= now, ~blocked)
        .order_by(src.c.customer_id, src.c.occurred_at, src.c.event_key)
    )
    picks: list[tuple[str, int, Any]] = []
    last_customer = None
    for event_key, customer_id, occurred_at in rows:
        if customer_id == last_customer:
            continue
        previous = last_entry.get(customer_id)
        if gap is not None and previous is not None and as_utc(occurred_at) - previous < gap:
            continue
        last_customer = customer_id
        picks.append((event_key, customer_id, occurred_at))
    return picks


def _entered_meanwhile(session: Session, spec: JourneySpec, customer_ids: list[int]) -> set[int]:
    """Of `customer_ids`, those another worker enrolled since the candidates were read: any
    enrollment (re-entry `never`) or an active one. The same event twice is left to the
    unique key (siyu.engine.claims.insert_returning_ids)."""
    found: set[int] = set()
    for start in range(0, len(customer_ids), CHUNK):
        query = select(Enrollment.customer_id).where(
            Enrollment.journey_name == spec.journey,
            Enrollment.customer_id.in_(customer_ids[start : start + CHUNK]),
        )
        if spec.entry.reentry_policy != "never":
            query = query.where(Enrollment.status == "active")
        found.update(session.scalars(query))
    return found


def _entry_source(session: Session, spec: JourneySpec, now: datetime) -> Subquery:
    """The entry event's rows, or the stays of an `entry.segment` (siyu.segments)."""
    if spec.entry.segment is not None:
        return segment_entries(spec.entry.segment)
    return filtered_source(session, spec.entry.as_filter(), tick_date(now, spec.timezone))


def _last_entries(session: Session, spec: JourneySpec) -> dict[int, datetime]:
    return {
        customer_id: as_utc(at)
        for customer_id, at in session.execute(
            select(Enrollment.customer_id, func.max(Enrollment.entered_at))
            .where(Enrollment.journey_name == spec.journey)
            .group_by(Enrollment.customer_id)
        )
    }


def _enrollment_row(
    spec: JourneySpec,
    journey: Journey,
    customer_id: int,
    entry_key: str,
    entered_at: Any,
    now: datetime,
) -> dict[str, Any]:
    return dict(
        journey_id=journey.id,
        journey_name=spec.journey,
        customer_id=customer_id,
        entry_key=entry_key,
        entered_at=entered_at,
        enrolled_at=now,
        status="active",
        holdout=in_holdout(customer_id, spec.journey, spec.holdout),
    )


def _enroll_calendar(
    sessions: sessionmaker[Session],
    spec: JourneySpec,
    journey: Journey,
    now: datetime,
    journeys_dir: Path | None,
) -> int:
    """Each firing of `entry.calendar` (in the journey's time zone) since the last one handled
    enrolls the `audience` with the firing as entry time. The audience is read once, in a
    read-only session (its `current_date` is the tick's date); who may enter at each firing
    is decided in the write transaction."""
    assert spec.entry.calendar is not None
    zone = ZoneInfo(spec.timezone)
    if journey.last_calendar_at is not None:  # CronSim gives the firings after it
        start = journey.last_calendar_at
    else:  # the first tick: a firing at the activation (minus the lookback) itself counts,
        # as an entry event at that moment does
        start = journey.activated_at - spec.entry.lookback - timedelta(microseconds=1)
    firings = []
    for firing in CronSim(spec.entry.calendar, start.astimezone(zone)):
        if firing > now:
            break
        firings.append(firing.astimezone(UTC))
    if not firings:
        return 0
    with marketer_read(sessions, spec, "entry.audience", journeys_dir) as session:
        audience = select(Customer.id)
        if spec.entry.audience:
            dialect = session.get_bind().dialect.name
            today = tick_date(now, spec.timezone)
            audience = audience.where(text(to_dialect(spec.entry.audience, dialect, today)))
        members = list(session.scalars(audience.order_by(Customer.id)))
    policy = spec.entry.reentry_policy
    enrolled = 0
    with write_session(sessions) as session:
        lock_journey(session, spec.journey)
        current = session.get(Journey, journey.id) or journey
        for firing in firings:
            key = f"calendar:{firing.isoformat()}"
            mine = Enrollment.journey_name == spec.journey
            if policy == "never":
                blocking = select(Enrollment.customer_id).where(mine)
            elif isinstance(policy, ReentryAfter):  # firing times are Python values
                blocking = select(Enrollment.customer_id).where(
                    mine,
                    or_(
                        Enrollment.status == "active",
                        Enrollment.entry_key == key,
                        Enrollment.entered_at > firing - policy.after,
                    ),
                )
            else:  # one enrollment at a time: a customer still inside is not enrolled again
                blocking = select(Enrollment.customer_id).where(
                    mine, or_(Enrollment.status == "active", Enrollment.entry_key == key)
                )
            blocked = set(session.scalars(blocking))
            rows = [
                _enrollment_row(spec, journey, i, key, firing, now)
                for i in members
                if i not in blocked
            ]
            for chunk_start in range(0, len(rows), CHUNK):
                enrolled += _insert(session, rows[chunk_start : chunk_start + CHUNK])
            current.last_calendar_at = firing
        session.flush()
    return enrolled


def _insert(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert enrollments; one that exists already (same journey, customer and entry event,
    written by another worker) is left alone and not counted."""
    return len(insert_returning_ids(session, ENROLLMENTS, rows, "id"))
