"""The daily data timetable of the source documents (每日17点同步数据 → 凌晨2点完成数据清洗 →
次日8点启动自动化任务), as three deployments chained by Prefect (prefect.yaml, Asia/Shanghai):

    17:00        data-sync       import the CRM's CSV exports from the inbox
    after sync   data-clean      the data-quality checks, then segments and alert rules;
                                 started by the sync's completion (a deployment trigger), and
                                 at 02:00 by its schedule if it has not run by then
    08:00        data-journeys   every journey by priority, once the cleaning succeeded; a
                                 cleaning that finishes after 08:00 starts it (trigger);
                                 then each journey's funnel (`<journey>-funnel` artifact)

Each stage records itself in `pipeline_runs` for its data day and runs only when the
previous stage of that day succeeded; it never waits: too early, it fails at once with the
reason, or, when a trigger started it before its time or after it already ran, it ends as
`Skipped` (a Completed state that triggers nothing).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import Completed
from sqlalchemy.orm import Session, sessionmaker

from flows.all_journeys_flow import all_journeys_tick
from flows.journey_flow import parse_now
from flows.segments_flow import segments_and_alerts
from siyu.errors import SiyuError
from siyu.metrics.tick_summary import funnel_markdown
from siyu.pipeline.inbox_sync import inbox_dir, sync_inbox
from siyu.pipeline.quality import run_checks
from siyu.pipeline.stages import (
    begin,
    data_day,
    finish,
    journeys_may_start,
    require_upstream,
    status_of,
)
from siyu.project import Project
from siyu.storage.engine import make_engine, make_sessionmaker


class StageFailed(SiyuError):
    pass


@flow(name="data-sync", log_prints=True)
def data_sync(now: str | None = None, max_bad_share: float = 0.05) -> dict[str, Any]:
    """Import the exports waiting in the inbox; fail when too many rows are bad."""
    moment = parse_now(now)
    day = data_day(moment)
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
    stage: str, now: str | None
) -> tuple[datetime, date, sessionmaker[Session]]:
    """Check the previous stage of this data day succeeded, then record this one as running."""
    moment = parse_now(now)
    day = data_day(moment)
    sessions = make_sessionmaker(make_engine())
    require_upstream(sessions, stage, day)
    with sessions() as session, session.begin():
        begin(session, stage, day, moment)
    return moment, day, sessions


def skipped(message: str) -> State[Any]:
    """A run with nothing to do: Completed, named Skipped, so it triggers no later stage."""
    get_run_logger().info(message)
    return Completed(name="Skipped", message=message)


@flow(name="data-clean", log_prints=True)
def data_clean(
    now: str | None = None, channel_base_url: str | None = None
) -> dict[str, Any] | State[Any]:
    """After the day's sync: check the data, then recompute segments and alert rules."""
    day = data_day(parse_now(now))
    if status_of(make_sessionmaker(make_engine()), "clean", day) == "succeeded":
        return skipped(f"the cleaning of {day} already succeeded")
    moment, day, sessions = _start_after_upstream("clean", now)
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
    now: str | None = None, channel_base_url: str | None = None
) -> dict[str, Any] | State[Any]:
    """From 08:00 after the day's cleaning: tick every journey (highest priority first)."""
    moment = parse_now(now)
    day = data_day(moment)
    if not journeys_may_start(day, moment):
        return skipped(f"the journeys of {day} start at 08:00 the next morning")
    if status_of(make_sessionmaker(make_engine()), "journeys", day) == "succeeded":
        return skipped(f"the journeys of {day} already ran")
    moment, day, sessions = _start_after_upstream("journeys", now)
    try:
        results = all_journeys_tick(now=moment.isoformat(), channel_base_url=channel_base_url)
    except Exception:
        finish(sessions, "journeys", day, False, {})
        raise
    finish(sessions, "journeys", day, True, {"journeys": sorted(results)})
    publish_funnels(sessions, sorted(results), moment)
    return results


def publish_funnels(sessions: sessionmaker[Session], journeys: list[str], now: datetime) -> None:
    """Each journey's funnel so far and experiment verdicts, once a day (`<journey>-funnel`):
    they read the journey's whole ledger, which a tick must not (flows/journey_flow.py)."""
    project = Project.find()
    for name in journeys:
        spec = project.journey(name)
        with sessions() as session:
            markdown = funnel_markdown(session, spec, now)
        create_markdown_artifact(
            key=re.sub(r"[^a-z0-9-]", "-", f"{name}-funnel".lower()),
            markdown=markdown,
            description=f"{name}: the funnel so far and the experiments' verdicts",
        )
