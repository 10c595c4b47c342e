"""The event sources as the engine reads them: one event's rows matching a filter's `where:`,
and each enrollment's first matching event after entry (goals and exits)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from siyu.language.spec import EventFilter, JourneySpec
from siyu.language.where_clause import tick_date, to_dialect, uses_current_date
from siyu.storage.models import Enrollment
from siyu.storage.sources import SOURCES
from siyu.storage.types import as_utc

CHUNK = 1000  # ids per IN list and rows per insert
LATE_EVENTS = timedelta(days=7)  # the default of EngineContext.late_events


# (event, where, dialect, day) → the sub-query: journeys have a handful of filters, each asked
# for by every phase and batch of every tick; building it anew re-parsed the `where:` (sqlglot)
# and rebuilt SQLAlchemy's column collections each time. The statement objects are immutable.
# `day` is the tick's date for a `where:` using current_date, else None (one entry for all days).
_sources: dict[tuple[str, str | None, str, date | None], Subquery] = {}


def filtered_source(session: Session, event_filter: EventFilter, today: date | None) -> Subquery:
    """The event source's rows matching the filter's `where`, as a sub-query `src`;
    `current_date` in it is `today` (siyu.language.where_clause.to_dialect)."""
    dialect = session.get_bind().dialect.name
    day = today if uses_current_date(event_filter.where) else None
    key = (event_filter.event, event_filter.where, dialect, day)
    cached = _sources.get(key)
    if cached is not None:
        return cached
    inner = SOURCES[event_filter.event].select().subquery("raw")
    query = select(inner)
    if event_filter.where:
        query = query.where(text(to_dialect(event_filter.where, dialect, day)))
    src = query.subquery("src")
    if len(_sources) >= 256:  # journeys edited while a worker runs: keep it bounded
        _sources.clear()
    _sources[key] = src
    return src


def first_matching_event(
    session: Session,
    spec: JourneySpec,
    event_filter: EventFilter,
    now: datetime,
    *conditions: Any,
    since: datetime | None = None,
) -> list[tuple[int, datetime, datetime]]:
    """(enrollment id, entered_at, first matching event after entry [and after `since`])."""
    src = filtered_source(session, event_filter, tick_date(now, spec.timezone))
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
