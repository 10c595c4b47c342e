"""Segments and alert rules, once a day: recompute every customer's RFM tier, lifecycle stage
and activity tags (segments.yaml), then evaluate the metric rules (alerts.yaml) for the day
just ended — a rule that fires ticks its journey at once and/or writes staff follow-ups.

Runs inside the 02:00 cleaning flow after the data-quality checks pass, or on its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.journey_flow import journey_tick, parse_now
from siyu.alerts.config import load_alerts
from siyu.alerts.rules import evaluate_rules
from siyu.project import Project
from siyu.segments.compute import refresh_segments
from siyu.segments.config import load_segments
from siyu.storage.engine import make_engine, make_sessionmaker


@task(cache_policy=NO_CACHE)
def compute_segments(now: datetime) -> dict[str, dict[str, int]]:
    config = load_segments(Project.find().root / "segments.yaml")
    engine = make_engine()
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            changes = refresh_segments(session, config, now)
    finally:
        engine.dispose()
    table = {
        name: {
            "members": changes.members[name],
            "entered": changes.entered[name],
            "left": changes.left[name],
        }
        for name in config.names()
    }
    create_table_artifact(
        key="segments",
        table=[{"segment": name, **counts} for name, counts in table.items()],
        description=f"segment sizes and moves at {now.isoformat()}",
    )
    return table


@task(cache_policy=NO_CACHE)
def check_alert_rules(now: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """The rules' outcomes, and the journeys fired rules asked to start."""
    project = Project.find()
    config = load_alerts(project.root / "alerts.yaml", list(project.journeys_by_name()))
    to_start: list[str] = []
    engine = make_engine()
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            outcomes = evaluate_rules(session, config, now, to_start.append)
    finally:
        engine.dispose()
    rows = [
        {
            "rule": o.rule,
            "day": o.day.isoformat(),
            "value": f"{o.value:.2%}",
            "breached": o.breached,
            "fired": o.fired,
            "action": o.action or "",
        }
        for o in outcomes
    ]
    if rows:
        create_table_artifact(key="alert-rules", table=rows, description="metric alert rules")
    for o in outcomes:
        if o.fired:
            get_run_logger().warning("alert %s fired: %s", o.rule, o.action)
    return rows, to_start


@flow(name="segments-and-alerts", log_prints=True)
def segments_and_alerts(
    now: str | None = None, channel_base_url: str | None = None
) -> dict[str, Any]:
    moment = parse_now(now)
    segments = compute_segments(moment)
    rules, to_start = check_alert_rules(moment)
    started = {
        name: journey_tick(journey=name, now=moment.isoformat(), channel_base_url=channel_base_url)
        for name in to_start
    }
    return {"segments": segments, "rules": rules, "started": sorted(started)}
