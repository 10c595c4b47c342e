"""`siyu segments refresh|check` and `siyu alerts check|follow-ups`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from siyu.cli.conventions import SiyuTyper, cli_command, parse_moment

segments_app = SiyuTyper(help="Customer segments (segments.yaml).")
alerts_app = SiyuTyper(help="Alert rules and follow-up tasks (alerts.yaml).")
console = Console(soft_wrap=True)


# Segments belong to no journey: a time without an offset is read in the zone journeys
# default to.
DEFAULT_ZONE = "Asia/Shanghai"


@segments_app.command("check")
@cli_command()
def segments_check() -> None:
    """Check segments.yaml; list the segment names journeys can use."""
    from siyu.project import Project
    from siyu.segments.config import load_segments

    config = load_segments(Project.find().root / "segments.yaml")
    console.print("segments: " + ", ".join(config.names()))


@segments_app.command("refresh")
@cli_command(database=True, tables=True)
def segments_refresh(
    now: Annotated[
        str | None,
        typer.Option(
            help=f"the moment to compute at: 2026-10-10, 2026-10-10T09:00 (both in "
            f"{DEFAULT_ZONE}) or with an offset; default: now",
            show_default=False,
            metavar="TIME",
        ),
    ] = None,
) -> None:
    """Recompute every customer's segments now and record who entered and left."""
    from siyu.project import Project
    from siyu.segments.compute import refresh_segments
    from siyu.segments.config import load_segments
    from siyu.storage.engine import make_engine, make_sessionmaker

    config = load_segments(Project.find().root / "segments.yaml")
    moment = parse_moment(now, DEFAULT_ZONE)
    engine = make_engine()
    with make_sessionmaker(engine)() as session, session.begin():
        changes = refresh_segments(session, config, moment)
    engine.dispose()
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
@cli_command()
def alerts_check() -> None:
    """Check alerts.yaml (keys, thresholds, the journeys rules start)."""
    from siyu.alerts.config import load_alerts
    from siyu.project import Project

    project = Project.find()
    config = load_alerts(project.root / "alerts.yaml", list(project.journeys_by_name()))
    b = config.breaker
    console.print(
        f"breaker: open above {b.failure_rate:.0%} failures over {b.window} "
        f"(at least {b.min_attempts} attempts), hold {b.cool_down}, probe {b.probe}"
    )
    for rule in config.rules:
        console.print(f"rule {rule.name}: {rule.metric} above {rule.above:.0%} for {rule.days} d")


@alerts_app.command("follow-ups")
@cli_command(database=True, tables=True)
def alerts_follow_ups() -> None:
    """The open follow-up tasks for staff, oldest first."""
    from sqlalchemy import select

    from siyu.storage.engine import make_engine, make_sessionmaker
    from siyu.storage.models import Customer, FollowUpTask

    table = Table("task", "rule", "customer", "channel", "note", "created")
    engine = make_engine()
    with make_sessionmaker(engine)() as session:
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
    engine.dispose()
    console.print(table)
