"""Exits: customers who did the exit event after entering leave the journey."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.claims import mark_exited
from siyu.engine.event_sources import CHUNK, LATE_EVENTS, first_matching_event
from siyu.engine.ledger import skip_open_deliveries
from siyu.engine.marketer_sql import marketer_read
from siyu.language.spec import JourneySpec
from siyu.storage.engine import write_session
from siyu.storage.models import Enrollment, Journey, ReasonCode


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
        rows = first_matching_event(
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
