"""Who is inside a journey: enroll new entrants, record goals, close exits, mark completions.

All set-based SQL over the event sources (db.sources); nothing here sends anything.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from db.models import Delivery, Enrollment, Journey
from db.sources import SOURCES
from db.types import UTCDateTime
from siyu.language.spec import EventFilter, JourneySpec
from siyu.language.where_clause import to_dialect
from tasks.ledger import skip_open_deliveries

CHUNK = 1000
_UTC = UTCDateTime()
_DIALECT_UNUSED: Any = None


def spec_hash(spec: JourneySpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def ensure_journey(session: Session, spec: JourneySpec, now: datetime) -> Journey:
    """The journey row for this exact spec; a changed spec becomes the next version.
    The first version's first tick sets `activated_at`, kept by later versions."""
    digest = spec_hash(spec)
    current = session.scalar(
        select(Journey).where(Journey.name == spec.journey, Journey.spec_hash == digest)
    )
    if current is not None:
        return current
    previous = session.scalar(
        select(Journey)
        .where(Journey.name == spec.journey)
        .order_by(Journey.version.desc())
        .limit(1)
    )
    journey = Journey(
        name=spec.journey,
        version=(previous.version + 1) if previous else 1,
        spec_hash=digest,
        spec=spec.model_dump(mode="json"),
        activated_at=previous.activated_at if previous else now,
        created_at=now,
    )
    session.add(journey)
    session.flush()
    return journey


def filtered_source(session: Session, event_filter: EventFilter) -> Subquery:
    """The event source's rows matching the filter's `where`, as a sub-query `src`."""
    inner = SOURCES[event_filter.event].select().subquery("raw")
    query = select(inner)
    if event_filter.where:
        dialect = session.get_bind().dialect.name
        query = query.where(text(to_dialect(event_filter.where, dialect)))
    return query.subquery("src")


def enroll_entrants(session: Session, spec: JourneySpec, journey: Journey, now: datetime) -> int:
    """Enroll every customer whose entry event happened since activation (minus the entry
    lookback) and who was never in this journey. One enrollment per customer: the earliest
    qualifying event wins."""
    src = filtered_source(session, spec.entry)
    since = journey.activated_at - spec.entry.lookback
    already = exists().where(
        Enrollment.journey_name == spec.journey, Enrollment.customer_id == src.c.customer_id
    )
    rows = session.execute(
        select(src.c.event_key, src.c.customer_id, src.c.occurred_at)
        .where(src.c.occurred_at > since, src.c.occurred_at <= now, ~already)
        .order_by(src.c.customer_id, src.c.occurred_at, src.c.event_key)
    )
    batch: list[dict[str, Any]] = []
    enrolled, last_customer = 0, None
    for event_key, customer_id, occurred_at in rows:
        if customer_id == last_customer:
            continue
        last_customer = customer_id
        batch.append(
            dict(
                journey_id=journey.id,
                journey_name=spec.journey,
                customer_id=customer_id,
                entry_key=event_key,
                entered_at=occurred_at,
                enrolled_at=now,
                status="active",
            )
        )
        if len(batch) >= CHUNK:
            enrolled += _insert(session, batch)
            batch = []
    if batch:
        enrolled += _insert(session, batch)
    return enrolled


def _insert(session: Session, rows: list[dict[str, Any]]) -> int:
    session.execute(insert(Enrollment), rows)
    return len(rows)


def _first_matching_event(
    session: Session, spec: JourneySpec, event_filter: EventFilter, now: datetime, *conditions: Any
) -> list[tuple[int, datetime, datetime]]:
    """(enrollment id, entered_at, first matching event after entry) for this journey."""
    src = filtered_source(session, event_filter)
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


def as_utc(value: Any) -> datetime:
    """A timestamp from an untyped result column (MIN() or a sub-query on SQLite)."""
    result = _UTC.process_result_value(value, _DIALECT_UNUSED)
    if result is None:
        raise ValueError("expected a timestamp, got NULL")
    return result


def record_goals(session: Session, spec: JourneySpec, now: datetime, grace: Any) -> int:
    if spec.goal is None:
        return 0
    window = spec.goal.within
    rows = _first_matching_event(
        session,
        spec,
        spec.goal,
        now,
        Enrollment.goal_reached_at.is_(None),
        Enrollment.entered_at >= now - window - grace,
    )
    reached = [(eid, at) for eid, entered, at in rows if at <= entered + window]
    for enrollment_id, at in reached:
        session.execute(
            update(Enrollment).where(Enrollment.id == enrollment_id).values(goal_reached_at=at)
        )
    return len(reached)


def close_exits(session: Session, spec: JourneySpec, now: datetime) -> int:
    """Active enrollments whose customer did the exit event after entering leave the
    journey; their deferred messages are skipped as `exited`."""
    if spec.exit_when is None:
        return 0
    rows = _first_matching_event(session, spec, spec.exit_when, now, Enrollment.status == "active")
    for enrollment_id, _entered, at in rows:
        session.execute(
            update(Enrollment)
            .where(Enrollment.id == enrollment_id)
            .values(status="exited", exited_at=at, exit_reason="exit_when")
        )
    skip_open_deliveries(session, [r[0] for r in rows], "exited", now)
    return len(rows)


def complete_finished(session: Session, spec: JourneySpec, now: datetime) -> int:
    """Active enrollments whose every step reached a final status are `completed`."""
    finished = (
        select(Delivery.enrollment_id)
        .where(
            Delivery.journey_name == spec.journey,
            Delivery.status.in_(("sent", "failed", "skipped")),
        )
        .group_by(Delivery.enrollment_id)
        .having(func.count() >= len(spec.steps))
    )
    result = session.execute(
        update(Enrollment)
        .where(
            Enrollment.journey_name == spec.journey,
            Enrollment.status == "active",
            Enrollment.id.in_(finished),
        )
        .values(status="completed")
    )
    return int(getattr(result, "rowcount", 0) or 0)
