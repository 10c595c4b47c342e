"""Who is inside a journey: enroll new entrants, record goals, close exits, mark completions.

All set-based SQL over the event sources (siyu.storage.sources); nothing here sends anything.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from sqlalchemy import and_, bindparam, exists, func, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Subquery

from siyu.engine.assignment import in_holdout
from siyu.engine.claims import ENROLLMENTS, executemany_update, insert_returning_ids, mark_exited
from siyu.engine.ledger import skip_open_deliveries
from siyu.engine.marketer_sql import marketer_read
from siyu.errors import ConfigError
from siyu.language.spec import EventFilter, JourneySpec, ReentryAfter
from siyu.language.where_clause import to_dialect
from siyu.segments.compute import segment_entries
from siyu.storage.engine import write_session
from siyu.storage.models import (
    TERMINAL_STATUSES,
    Customer,
    Delivery,
    Enrollment,
    Journey,
    ReasonCode,
)
from siyu.storage.sources import SOURCES
from siyu.storage.types import as_utc

CHUNK = 1000
LATE_EVENTS = timedelta(days=7)  # the default of EngineContext.late_events


def spec_hash(spec: JourneySpec) -> str:
    canonical = json.dumps(stored_spec(spec), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_spec(spec: JourneySpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True)


def lock_journey(session: Session, journey: str) -> None:
    """Serialise enrollment of one journey across workers until the transaction ends, so two
    ticks at once neither create its version row twice nor enroll a customer twice under
    different entry events. SQLite already serialises writers
    (siyu.storage.engine.write_session)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"siyu-enroll:{journey}"))))


def ensure_journey(session: Session, spec: JourneySpec, now: datetime) -> Journey:
    """The row of the file's `version:`. Editing a file without raising its version updates
    that version in place; a new version applies the file's `migrate:` policy to customers
    inside older versions. The first tick ever sets `activated_at`, kept by later versions."""
    rows = session.scalars(
        select(Journey).where(Journey.name == spec.journey).order_by(Journey.version)
    ).all()
    current = next((row for row in rows if row.version == spec.version), None)
    if current is not None:
        digest = spec_hash(spec)
        if current.spec_hash != digest:
            current.spec_hash, current.spec = digest, stored_spec(spec)
            session.flush()
        return current
    latest = rows[-1] if rows else None
    if latest is not None and latest.version > spec.version:
        raise ConfigError(
            f"journey '{spec.journey}' already ran as version {latest.version}; "
            f"the file says version {spec.version}. Raise `version:` instead of "
            "lowering it."
        )
    journey = Journey(
        name=spec.journey,
        version=spec.version,
        spec_hash=spec_hash(spec),
        spec=stored_spec(spec),
        activated_at=rows[0].activated_at if rows else now,
        created_at=now,
    )
    session.add(journey)
    session.flush()
    if latest is not None and spec.migrate.policy == "move":
        _move_enrollments(session, spec, journey)
    return journey


def _move_enrollments(session: Session, spec: JourneySpec, journey: Journey) -> None:
    """Put the customers inside older versions onto this one; their ledger rows of renamed
    steps count as the new steps (so nothing already sent is sent again)."""
    moved = select(Enrollment.id).where(
        Enrollment.journey_name == spec.journey,
        Enrollment.status == "active",
        Enrollment.journey_id != journey.id,
    )
    for old, new in spec.migrate.steps.items():
        clash = select(Delivery.enrollment_id).where(
            Delivery.step_id == new, Delivery.journey_name == spec.journey
        )
        session.execute(
            update(Delivery)
            .where(
                Delivery.journey_name == spec.journey,
                Delivery.step_id == old,
                Delivery.enrollment_id.in_(moved),
                Delivery.enrollment_id.not_in(clash),
            )
            .values(step_id=new)
        )
    session.execute(
        update(Enrollment).where(Enrollment.id.in_(moved)).values(journey_id=journey.id)
    )


def spec_of(journey: Journey) -> JourneySpec:
    return JourneySpec.model_validate(journey.spec)


# (event, where, dialect) → the sub-query: journeys have a handful of filters, each asked for
# by every phase and batch of every tick; building it anew re-parsed the `where:` (sqlglot)
# and rebuilt SQLAlchemy's column collections each time. The statement objects are immutable.
_sources: dict[tuple[str, str | None, str], Subquery] = {}


def filtered_source(session: Session, event_filter: EventFilter) -> Subquery:
    """The event source's rows matching the filter's `where`, as a sub-query `src`."""
    dialect = session.get_bind().dialect.name
    key = (event_filter.event, event_filter.where, dialect)
    cached = _sources.get(key)
    if cached is not None:
        return cached
    inner = SOURCES[event_filter.event].select().subquery("raw")
    query = select(inner)
    if event_filter.where:
        query = query.where(text(to_dialect(event_filter.where, dialect)))
    src = query.subquery("src")
    if len(_sources) >= 256:  # journeys edited while a worker runs: keep it bounded
        _sources.clear()
    _sources[key] = src
    return src


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
    src = _entry_source(session, spec)
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
        .where(src.c.occurred_at > since, src.c.occurred_at <= now, ~blocked)
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


def _entry_source(session: Session, spec: JourneySpec) -> Subquery:
    """The entry event's rows, or the stays of an `entry.segment` (siyu.segments)."""
    if spec.entry.segment is not None:
        return segment_entries(spec.entry.segment)
    return filtered_source(session, spec.entry.as_filter())


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
    read-only session; who may enter at each firing is decided in the write transaction."""
    assert spec.entry.calendar is not None
    zone = ZoneInfo(spec.timezone)
    start = journey.last_calendar_at or (journey.activated_at - spec.entry.lookback)
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
            audience = audience.where(text(to_dialect(spec.entry.audience, dialect)))
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


def _first_matching_event(
    session: Session,
    spec: JourneySpec,
    event_filter: EventFilter,
    now: datetime,
    *conditions: Any,
    since: datetime | None = None,
) -> list[tuple[int, datetime, datetime]]:
    """(enrollment id, entered_at, first matching event after entry [and after `since`])."""
    src = filtered_source(session, event_filter)
    if since is not None:
        conditions = (*conditions, src.c.occurred_at > since)
    query = (
        select(Enrollment.id, Enrollment.entered_at, func.min(src.c.occurred_at))
        .join(
            src,
            and_(
                src.c.customer_id == Enrollment.customer_id,
                src.c.occurred_at > Enrollment.entered_at,
                src.c.occurred_at <= now,
            ),
        )
        .where(Enrollment.journey_name == spec.journey, *conditions)
        .group_by(Enrollment.id, Enrollment.entered_at)
    )
    return [(row[0], row[1], as_utc(row[2])) for row in session.execute(query)]


def record_goals(
    sessions: sessionmaker[Session],
    spec: JourneySpec,
    now: datetime,
    grace: Any,
    journeys_dir: Path | None = None,
) -> int:
    """Record goals reached: found with the goal's `where:` in a read-only session, written
    in a short write transaction afterwards."""
    if spec.goal is None:
        return 0
    window = spec.goal.within
    with marketer_read(sessions, spec, "goal.where", journeys_dir) as session:
        rows = _first_matching_event(
            session,
            spec,
            spec.goal,
            now,
            Enrollment.goal_reached_at.is_(None),
            Enrollment.entered_at >= now - window - grace,
        )
    reached = [
        {"enrollment_id": eid, "goal_reached_at": at}
        for eid, entered, at in rows
        if at <= entered + window
    ]
    if reached:  # one executemany, not one ORM statement per enrollment
        with write_session(sessions) as session:
            session.connection().execute(_GOAL_REACHED, reached)
    return len(reached)


# Only a goal not yet recorded: another worker may have recorded it since the read.
_GOAL_REACHED = executemany_update(
    ENROLLMENTS,
    and_(ENROLLMENTS.c.id == bindparam("enrollment_id"), ENROLLMENTS.c.goal_reached_at.is_(None)),
    ("goal_reached_at",),
)


def close_exits(
    sessions: sessionmaker[Session],
    spec: JourneySpec,
    now: datetime,
    late_events: timedelta = LATE_EVENTS,
    journeys_dir: Path | None = None,
) -> int:
    """Active enrollments whose customer did the exit event after entering leave the
    journey; their deferred messages are skipped as `exited`. Only exit events since the
    previous tick (minus `late_events`) are scanned; an older one was seen by an earlier tick.
    The send step checks exits again per batch (without this bound) right before sending.
    The exit events are found in a read-only session (the journey's own `where:`), the
    exits written in a write transaction afterwards, for enrollments still active then."""
    if spec.exit_when is None:
        return 0
    version = select(Journey).where(Journey.name == spec.journey, Journey.version == spec.version)
    with marketer_read(sessions, spec, "exit_when.where", journeys_dir) as session:
        journey = session.scalar(version)
        since = journey.exits_through - late_events if journey and journey.exits_through else None
        rows = _first_matching_event(
            session, spec, spec.exit_when, now, Enrollment.status == "active", since=since
        )
    with write_session(sessions) as session:
        journey = session.scalar(version)
        if journey is not None:
            journey.exits_through = max(journey.exits_through or now, now)
        active = _still_active(session, [r[0] for r in rows])
        rows = [r for r in rows if r[0] in active]
        # status exited, exit_reason exit_when: one executemany (the send step's own marking)
        mark_exited(session, [{"enrollment_id": eid, "exited_at": at} for eid, _e, at in rows])
        skip_open_deliveries(session, [r[0] for r in rows], ReasonCode.EXITED, now)
    return len(rows)


def _still_active(session: Session, enrollment_ids: list[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(enrollment_ids), CHUNK):
        found.update(
            session.scalars(
                select(Enrollment.id).where(
                    Enrollment.id.in_(enrollment_ids[start : start + CHUNK]),
                    Enrollment.status == "active",
                )
            )
        )
    return found


def complete_finished(session: Session, spec: JourneySpec, now: datetime) -> int:
    """Active enrollments whose every step (of their own version) reached a final status are
    `completed`: those with at least as many final ledger rows as their version has steps.

    Counted per active enrollment, so a tick reads the journey's active enrollments, not the
    ledger of every enrollment that ever finished."""
    done = 0
    versions = session.execute(
        select(Journey.id, Journey.version).where(Journey.name == spec.journey)
    ).all()
    for journey_id, version in versions:
        steps = len(
            spec.steps if version == spec.version else _spec_of_id(session, journey_id).steps
        )
        result = session.execute(
            _COMPLETE,
            {"version_id": journey_id, "name": spec.journey, "steps": max(steps, 1)},
        )
        done += int(getattr(result, "rowcount", 0) or 0)
    return done


def _spec_of_id(session: Session, journey_id: int) -> JourneySpec:
    return JourneySpec.model_validate(
        session.scalar(select(Journey.spec).where(Journey.id == journey_id))
    )


# An enrollment's rows always carry its journey's name (both are written from the same spec),
# so filtering enrollments by name too changes nothing and lets the
# (journey_name, status, journey_id) index find the active ones. `steps` is at least 1: an
# enrollment without any final row was never completed (it had no group in the former
# GROUP BY ... HAVING form). Any ledger rows first, final ones second: the first count reads
# only the unique (enrollment_id, step_id) index, and most active enrollments are still
# waiting for a step that has no row yet, so the second (which reads the rows) rarely runs.
_ROWS = select(func.count()).where(Delivery.enrollment_id == Enrollment.id).scalar_subquery()
_FINAL_ROWS = (
    select(func.count())
    .where(
        Delivery.enrollment_id == Enrollment.id,
        Delivery.journey_name == bindparam("name"),
        Delivery.status.in_(TERMINAL_STATUSES),
    )
    .scalar_subquery()
)
_COMPLETE = (
    update(Enrollment)
    .where(
        Enrollment.journey_name == bindparam("name"),
        Enrollment.status == "active",
        Enrollment.journey_id == bindparam("version_id"),
        _ROWS >= bindparam("steps"),
        _FINAL_ROWS >= bindparam("steps"),
    )
    .values(status="completed")
    .execution_options(synchronize_session=False)
)


def kept_versions(session: Session, spec: JourneySpec) -> list[tuple[int, JourneySpec]]:
    """Older versions that still have customers inside (the `keep` policy): (id, spec)."""
    active = (
        select(Enrollment.journey_id)
        .where(Enrollment.journey_name == spec.journey, Enrollment.status == "active")
        .distinct()
    )
    rows = session.scalars(
        select(Journey)
        .where(
            Journey.name == spec.journey, Journey.version != spec.version, Journey.id.in_(active)
        )
        .order_by(Journey.version)
    )
    return [(row.id, spec_of(row)) for row in rows]
