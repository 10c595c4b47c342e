"""`siyu report` (the HTML report of a journey) and `siyu clicks sync` (tracked-link clicks
into `link_clicked` events)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from siyu.cli.conventions import JOURNEY_HELP, SiyuTyper, cli_command, output_path

clicks_app = SiyuTyper(help="Tracked-link clicks.")


@cli_command(database=True, tables=True)
def report_command(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="HTML file; default: var/JOURNEY-report.html", show_default=False
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report of a journey (under var/ unless -o).

    Funnel, daily sends by channel, conversion over time, experiment results (treated vs
    holdout, variants) with intervals and p-values."""
    from siyu.cli.journey_arg import project_journey
    from siyu.project import Project
    from siyu.reports.html_report import render_report
    from siyu.storage.engine import make_engine, make_sessionmaker

    started = time.perf_counter()
    spec = project_journey(Project.find(), journey)
    engine = make_engine()
    with make_sessionmaker(engine)() as session:
        page = render_report(session, spec, datetime.now(UTC))
    engine.dispose()
    target = output_path(output, f"{spec.journey}-report.html")
    target.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {target} ({len(page) // 1024} KiB in {time.perf_counter() - started:.2f} s)")


@clicks_app.command("sync")
@cli_command(database=True, tables=True)
def clicks_sync(
    source: Annotated[
        str, typer.Option("--from", help="the redirect endpoint's base URL (the sandbox)")
    ] = "http://127.0.0.1:8765",
) -> None:
    """Pull the clicks the redirect endpoint logged and record them as `link_clicked`
    events (forged links are dropped; running it again adds nothing twice)."""
    from siyu.metrics.clicks import fetch_clicks, record_clicks
    from siyu.storage.engine import make_engine, make_sessionmaker

    clicks = fetch_clicks(source)
    engine = make_engine()
    with make_sessionmaker(engine)() as session, session.begin():
        result = record_clicks(session, clicks)
    engine.dispose()
    typer.echo(
        f"{result.fetched} clicks: {result.inserted} new, {result.already} already recorded, "
        f"{result.forged} dropped (bad signature or unknown customer)"
    )
