"""The daily data timetable of the source documents (每日17点同步数据 → 凌晨2点完成数据清洗 →
次日8点启动自动化任务), as three deployments (prefect.yaml, Asia/Shanghai):

    17:00  data-sync       import the CRM's CSV exports from the inbox (siyu.pipeline.inbox_sync)
    02:00  data-clean      wait for that sync, run the data-quality checks, then segments and
                           alert rules (flows/segments_flow.py)
    08:00  data-journeys   wait for that cleaning, then tick every journey by priority

Each stage records itself in `pipeline_runs` for its data day and starts only when the
previous stage of that day succeeded: it waits (polling, `wait_minutes`) for one still
running and fails at once after a failed one. This works with a plain local Prefect server
and process worker (no automations or event triggers needed), survives restarts (the state
is in the database) and shows a skipped day as a failed flow run with the reason.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, make_sessionmaker
from flows.all_journeys_flow import all_journeys_tick
from flows.journey_flow import parse_now
from flows.segments_flow import segments_and_alerts
from siyu.errors import SiyuError
from siyu.pipeline.inbox_sync import inbox_dir, sync_inbox
from siyu.pipeline.quality import run_checks
from siyu.pipeline.stages import begin, data_day, finish, wait_for_upstream
from siyu.project import Project


class StageFailed(SiyuError):
    pass


@flow(name="data-sync", log_prints=True)
def data_sync(now: str | None = None, max_bad_share: float = 0.05) -> dict[str, Any]:
    """Import the exports waiting in the inbox; fail when too many rows are bad."""
    moment = parse_now(now)
    day = data_day("sync", moment)
    sessions = make_sessionmaker(make_engine())
    with sessions() as session, session.begin():
        begin(session, "sync", day, moment)
    inbox = inbox_dir(Project.find().root)
    try:
        report = sync_inbox(sessions, inbox, day)
    except Exception:
        finish(sessions, "sync", day, False, {})
        raise
    if not report.files and not report.errors:
        get_run_logger().warning("sync of %s: no exports in %s", day, inbox)
    ok = report.bad_share <= max_bad_share and not report.errors
    detail = {"files": report.files, "rows": report.rows, "bad": report.bad}
    finish(sessions, "sync", day, ok, detail)
    create_table_artifact(
        key="data-sync",
        table=report.files or [{"file": "-", "kind": "-", "rows": 0}],
        description=f"sync of {day} from {inbox}: {report.rows} rows, {report.bad} bad",
    )
    for problem in report.errors + report.problems:
        get_run_logger().warning(problem)
    if not ok:
        raise StageFailed(
            f"sync of {day}: {report.bad} of {report.rows} rows bad "
            f"({report.bad_share:.1%}, at most {max_bad_share:.0%} allowed)"
            + "".join(f"\n  {p}" for p in (report.errors + report.problems)[:20])
        )
    return detail


def _start_after_upstream(
    stage: str, now: str | None, wait_minutes: float
) -> tuple[datetime, date, sessionmaker[Session]]:
    """Wait for the previous stage of this data day, then record this one as running."""
    moment = parse_now(now)
    day = data_day(stage, moment)
    sessions = make_sessionmaker(make_engine())
    wait_for_upstream(sessions, stage, day, wait_minutes * 60)
    with sessions() as session, session.begin():
        begin(session, stage, day, moment)
    return moment, day, sessions


@flow(name="data-clean", log_prints=True)
def data_clean(
    now: str | None = None, wait_minutes: float = 60, channel_base_url: str | None = None
) -> dict[str, Any]:
    """Wait for the day's sync, check the data, then recompute segments and alert rules."""
    moment, day, sessions = _start_after_upstream("clean", now, wait_minutes)
    with sessions() as session:
        checks = run_checks(session)
    rows = [check.as_row() for check in checks]
    create_table_artifact(
        key="data-quality", table=rows, description=f"data-quality checks for {day}"
    )
    failed = [c for c in checks if c.outcome == "fail"]
    for check in checks:
        if check.outcome == "warn":
            get_run_logger().warning(
                "data quality: %s %s (%s)", check.name, check.kind, check.detail
            )
    if failed:
        finish(sessions, "clean", day, False, {"checks": rows})
        raise StageFailed(
            f"data-quality checks failed for {day}: "
            + "; ".join(f"{c.name} ({c.detail})" for c in failed)
        )
    try:
        result = segments_and_alerts(now=moment.isoformat(), channel_base_url=channel_base_url)
    except Exception:  # e.g. a broken segments.yaml: the journeys of the day must not run
        finish(sessions, "clean", day, False, {"checks": rows})
        raise
    finish(sessions, "clean", day, True, {"checks": rows})
    return {"checks": rows, "segments": result}


@flow(name="data-journeys", log_prints=True)
def data_journeys(
    now: str | None = None, wait_minutes: float = 60, channel_base_url: str | None = None
) -> dict[str, Any]:
    """Wait for the day's cleaning, then tick every journey (highest priority first)."""
    moment, day, sessions = _start_after_upstream("journeys", now, wait_minutes)
    try:
        results = all_journeys_tick(now=moment.isoformat(), channel_base_url=channel_base_url)
    except Exception:
        finish(sessions, "journeys", day, False, {})
        raise
    finish(sessions, "journeys", day, True, {"journeys": sorted(results)})
    return results
