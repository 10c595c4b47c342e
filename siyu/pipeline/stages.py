"""Stage bookkeeping of the timetable (pipeline_runs): each stage records its run for a data
day, and a stage starts only after the previous stage of the same data day succeeded.

Data day: the day whose 17:00 sync brought the data. The cleaning (right after the sync, or
at 02:00 at the latest) and the 08:00 journeys of the next morning work on it: a moment
belongs to the data day of the last 16:00 before it (an hour of slack for an early sync).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.errors import SiyuError
from siyu.storage.models import PipelineRun

SHANGHAI = ZoneInfo("Asia/Shanghai")
ORDER = ("sync", "clean", "journeys")
DATA_DAY_STARTS = time(16, 0)
JOURNEYS_START = time(8, 0)  # the journeys of a data day run from 08:00 the next morning


class UpstreamNotReady(SiyuError):
    pass


def data_day(now: datetime) -> date:
    local = now.astimezone(SHANGHAI)
    return local.date() if local.time() >= DATA_DAY_STARTS else local.date() - timedelta(1)


def journeys_may_start(day: date, now: datetime) -> bool:
    """Whether the journeys of data day `day` may run at `now` (08:00 the next morning)."""
    start = datetime.combine(day + timedelta(1), JOURNEYS_START, tzinfo=SHANGHAI)
    return now >= start


def status_of(sessions: sessionmaker[Session], stage: str, day: date) -> str | None:
    with sessions() as session:
        return session.scalar(
            select(PipelineRun.status).where(
                PipelineRun.stage == stage, PipelineRun.data_day == day
            )
        )


def begin(session: Session, stage: str, day: date, now: datetime) -> PipelineRun:
    run = session.scalar(
        select(PipelineRun).where(PipelineRun.stage == stage, PipelineRun.data_day == day)
    )
    if run is None:
        run = PipelineRun(stage=stage, data_day=day, started_at=now, status="running", detail={})
        session.add(run)
    run.status, run.started_at, run.finished_at = "running", now, None
    session.flush()
    return run


def finish(
    sessions: sessionmaker[Session], stage: str, day: date, ok: bool, detail: dict[str, Any]
) -> None:
    with sessions() as session, session.begin():
        run = session.scalar(
            select(PipelineRun).where(PipelineRun.stage == stage, PipelineRun.data_day == day)
        )
        if run is not None:
            run.status = "succeeded" if ok else "failed"
            run.finished_at = datetime.now(SHANGHAI)
            run.detail = detail


def require_upstream(sessions: sessionmaker[Session], stage: str, day: date) -> None:
    """Return when the stage before `stage` succeeded for `day`; UpstreamNotReady otherwise.
    Never waits: a stage that comes too early fails at once with the reason, and the
    upstream's completion starts it again (a deployment trigger in prefect.yaml)."""
    upstream = ORDER[ORDER.index(stage) - 1]
    status = status_of(sessions, upstream, day)
    if status == "succeeded":
        return
    if status == "failed":
        raise UpstreamNotReady(f"{stage}: the {upstream} of {day} failed; not starting")
    raise UpstreamNotReady(
        f"{stage}: the {upstream} of {day} has not succeeded ({status or 'not run'}); "
        f"its completion will start this stage"
    )
