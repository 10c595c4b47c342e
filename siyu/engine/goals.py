"""Goals reached: an enrollment's first goal event within the goal's window is recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.claims import ENROLLMENTS, executemany_update
from siyu.engine.event_sources import LATE_EVENTS, first_matching_event
from siyu.engine.marketer_sql import marketer_read
from siyu.language.spec import JourneySpec
from siyu.storage.engine import write_session
from siyu.storage.models import Enrollment, Journey


def record_goals(
    sessions: sessionmaker[Session],
    spec: JourneySpec,
    now: datetime,
    grace: Any,
    journeys_dir: Path | None = None,
    late_events: timedelta = LATE_EVENTS,
) -> int:
    """Record goals reached: found with the goal's `where:` in a read-only session, written
    in a short write transaction afterwards. Only goal events since the previous tick's scan
    (minus `late_events`) are looked at: an earlier one was seen then, and either recorded or
    outside its enrollment's window, where a later one is too."""
    if spec.goal is None:
        return 0
    window = spec.goal.within
    version = select(Journey).where(Journey.name == spec.journey, Journey.version == spec.version)
    with marketer_read(sessions, spec, "goal.where", journeys_dir) as session:
        journey = session.scalar(version)
        since = journey.goals_through - late_events if journey and journey.goals_through else None
        rows = first_matching_event(
            session,
            spec,
            spec.goal,
            now,
            Enrollment.goal_reached_at.is_(None),
            Enrollment.entered_at >= now - window - grace,
            since=since,
        )
    reached = [
        {"enrollment_id": eid, "goal_reached_at": at}
        for eid, entered, at in rows
        if at <= entered + window
    ]
    with write_session(sessions) as session:
        if reached:  # one executemany, not one ORM statement per enrollment
            session.connection().execute(_GOAL_REACHED, reached)
        journey = session.scalar(version)
        if journey is not None:  # in the same transaction as the goals it saw
            journey.goals_through = max(journey.goals_through or now, now)
    return len(reached)


# Only a goal not yet recorded: another worker may have recorded it since the read.
_GOAL_REACHED = executemany_update(
    ENROLLMENTS,
    and_(ENROLLMENTS.c.id == bindparam("enrollment_id"), ENROLLMENTS.c.goal_reached_at.is_(None)),
    ("goal_reached_at",),
)
