"""`siyu segments refresh|check` and `siyu alerts check|follow-ups`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from siyu.errors import SiyuError

segments_app = typer.Typer(help="Customer segments (segments.yaml).", no_args_is_help=True)
alerts_app = typer.Typer(
    help="Alert rules and follow-up tasks (alerts.yaml).", no_args_is_help=True
)
console = Console(soft_wrap=True)


def _fail(error: SiyuError) -> None:
    Console(stderr=True, soft_wrap=True).print(str(error), markup=False, highlight=False)
    raise typer.Exit(1)


@segments_app.command("check")
def segments_check() -> None:
    """Check segments.yaml; list the segment names journeys can use."""
    from siyu.project import Project
    from siyu.segments.config import load_segments

    try:
        config = load_segments(Project.find().root / "segments.yaml")
    except SiyuError as error:
        _fail(error)
        return
    console.print("segments: " + ", ".join(config.names()))


@segments_app.command("refresh")
def segments_refresh(
    now: Annotated[str | None, typer.Option(help="ISO time with offset; default: now")] = None,
) -> None:
    """Recompute every customer's segments now and record who entered and left."""
    from db.engine import make_engine, make_sessionmaker
    from flows.journey_flow import parse_now
    from siyu.project import Project
    from siyu.segments.compute import refresh_segments
    from siyu.segments.config import load_segments

    try:
        config = load_segments(Project.find().root / "segments.yaml")
    except SiyuError as error:
        _fail(error)
        return
    with make_sessionmaker(make_engine())() as session, session.begin():
        changes = refresh_segments(session, config, parse_now(now))
    table = Table("segment", "members", "entered", "left")
    for name in config.names():
        table.add_row(
            name,
            str(changes.members[name]),
            str(changes.entered[name]),
            str(changes.left[name]),
        )
    console.print(table)


@alerts_app.command("check")
def alerts_check() -> None:
    """Check alerts.yaml (keys, thresholds, the journeys rules start)."""
    from siyu.alerts.config import load_alerts
    from siyu.project import Project

    project = Project.find()
    try:
        config = load_alerts(project.root / "alerts.yaml", list(project.journeys_by_name()))
    except SiyuError as error:
        _fail(error)
        return
    b = config.breaker
    console.print(
        f"breaker: open above {b.failure_rate:.0%} failures over {b.window} "
        f"(at least {b.min_attempts} attempts), hold {b.cool_down}, probe {b.probe}"
    )
    for rule in config.rules:
        console.print(f"rule {rule.name}: {rule.metric} above {rule.above:.0%} for {rule.days} d")


@alerts_app.command("follow-ups")
def alerts_follow_ups() -> None:
    """The open follow-up tasks for staff, oldest first."""
    from sqlalchemy import select

    from db.engine import make_engine, make_sessionmaker
    from db.models import Customer, FollowUpTask

    table = Table("task", "rule", "customer", "channel", "note", "created")
    with make_sessionmaker(make_engine())() as session:
        for task, name in session.execute(
            select(FollowUpTask, Customer.name)
            .join(Customer, Customer.id == FollowUpTask.customer_id)
            .where(FollowUpTask.status == "open")
            .order_by(FollowUpTask.id)
        ):
            table.add_row(
                str(task.id),
                task.rule,
                f"{task.customer_id} {name}",
                task.channel,
                task.note,
                task.created_at.isoformat(timespec="minutes"),
            )
    console.print(table)
