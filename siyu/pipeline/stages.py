"""Stage bookkeeping of the timetable (pipeline_runs): each stage records its run for a data
day, and a stage starts only after the previous stage of the same data day succeeded.

Data day: the day whose 17:00 sync brought the data. The 02:00 clean and the 08:00 journeys
of the next calendar day work on it (so their data day is their own date minus one).
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import PipelineRun
from siyu.errors import SiyuError

SHANGHAI = ZoneInfo("Asia/Shanghai")
ORDER = ("sync", "clean", "journeys")


class UpstreamNotReady(SiyuError):
    pass


def data_day(stage: str, now: datetime) -> date:
    local = now.astimezone(SHANGHAI)
    # the sync runs in the evening of its data day; later stages run after midnight
    return local.date() if stage == "sync" and local.hour >= 12 else local.date() - timedelta(1)


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


def wait_for_upstream(
    sessions: sessionmaker[Session], stage: str, day: date, wait_seconds: float, poll: float = 30
) -> None:
    """Return once the stage before `stage` succeeded for `day`; UpstreamNotReady when it
    failed, or did not succeed within `wait_seconds`."""
    upstream = ORDER[ORDER.index(stage) - 1]
    deadline = time.monotonic() + wait_seconds
    while True:
        with sessions() as session:
            status = session.scalar(
                select(PipelineRun.status).where(
                    PipelineRun.stage == upstream, PipelineRun.data_day == day
                )
            )
        if status == "succeeded":
            return
        if status == "failed":
            raise UpstreamNotReady(f"{stage}: the {upstream} of {day} failed; not starting")
        if time.monotonic() >= deadline:
            raise UpstreamNotReady(
                f"{stage}: the {upstream} of {day} has not succeeded "
                f"({status or 'not run'}) after waiting {wait_seconds:g} s"
            )
        time.sleep(min(poll, max(deadline - time.monotonic(), 0.05)))
