"""`siyu simulate`: backtest one journey (or two versions side by side) over the database's
history; tables of the outcome per step and per day, and an optional CSV of everything."""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from siyu.cli.conventions import JOURNEY_HELP, cli_command, parse_moment
from siyu.errors import ConfigError
from siyu.language.durations import parse_duration

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.language.spec import JourneySpec
    from siyu.project import Project
    from siyu.simulate.runner import SimulationReport, SimulationSettings

console = Console()


def _every(text: str) -> timedelta:
    try:
        step = parse_duration(text)
    except ValueError as error:
        raise ConfigError(f"--every: {error}") from None
    if step <= timedelta(0):
        raise ConfigError(f"--every '{text}' must be longer than 0, e.g. 1h or 15m")
    return step


@cli_command(database=True, tables=True)
def simulate_command(
    journey: Annotated[str, typer.Argument(help=JOURNEY_HELP, show_default=False)],
    start: Annotated[
        str,
        typer.Option(
            help="first tick: 2026-09-01 (midnight), 2026-09-01T08:00 (both in the journey's "
            "time zone) or with an offset, 2026-09-01T08:00+08:00",
            show_default=False,
            metavar="TIME",
        ),
    ],
    days: Annotated[
        int, typer.Option(help="how many days of history to replay", min=1, max=3660)
    ] = 90,
    every: Annotated[
        str | None,
        typer.Option(
            help="also tick at least this often, e.g. 1h (the backtest ticks at each moment "
            "something can happen: an event, a step coming due, a wait ending; the result is "
            "the same with or without)",
            show_default=False,
        ),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="a second version (name or file) to simulate side by side", show_default=False
        ),
    ] = None,
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", help="write day × step × outcome counts here", show_default=False),
    ] = None,
    show_days: Annotated[int, typer.Option(help="rows of the per-day table (0: all)", min=0)] = 14,
    keep: Annotated[
        Path | None,
        typer.Option(
            help="keep the backtest's database in this folder (<journey>.db; -A/-B with "
            "--compare), for siyu explain, report and summary --database sqlite:///DIR/FILE",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            help="write siyu report's HTML page for the backtest here (with --compare, the "
            "two versions side by side)",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Backtest a journey on a copy of the database with a simulated clock; sends nothing.

    It ticks at each moment something can happen (an entry, exit or goal event, a step
    coming due, quiet hours or a cap's wait ending): every tick runs the real engine (enroll,
    goals, exits, every step's rules and rendering) through channels that only count. The
    database itself is not changed.

    Consents and opt-outs: as they were at each moment, where the data dates them.
    """
    from siyu.cli.journey_arg import resolve_journey
    from siyu.cli.simulate_output import compare_table, print_report, write_csv
    from siyu.project import Project
    from siyu.simulate.runner import SimulationSettings, setting_warnings

    project = Project.find()
    specs = [resolve_journey(project, journey)]
    if compare:
        specs.append(resolve_journey(project, compare))
    begin = parse_moment(start, specs[0].timezone, option="--start")
    try:
        end = begin + timedelta(days=days)
    except OverflowError:
        raise ConfigError(f"--start {start} plus --days {days} runs past the year 9999") from None
    settings = SimulationSettings(begin, end, _every(every) if every else None)
    for spec in specs:
        for warning in setting_warnings(spec, settings):
            console.print(f"warning: {spec.journey}: {warning}", style="yellow", markup=False)
    labels = ["A", "B"] if compare else [""]  # the versions, when two are compared
    keeps: list[Path | None] = [
        None if keep is None else keep / f"{spec.journey}{'-' if label else ''}{label}.db"
        for spec, label in zip(specs, labels, strict=True)
    ]
    for output in (csv_out, html):  # refused before a long backtest, not after it
        if output is not None and not output.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(output))
    bodies: list[tuple[str, str]] = []  # (heading, HTML report body) per version
    # SIGTERM ends the command as Ctrl-C does, so the scratch copy is removed on the way out.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        reports = [
            _backtest(
                project,
                spec,
                settings,
                f" ({label})" if label else "",
                keep_as,
                _report_page(spec, settings, label, bodies) if html else None,
            )
            for spec, label, keep_as in zip(specs, labels, keeps, strict=True)
        ]
    except Exception:
        # A SIGTERM inside one of SQLite's callbacks fails the query it interrupted, as a
        # database error: that is the termination too, not an error to report (seen once
        # in CI: exit 1 instead of 143). The scratch copy is gone by now either way.
        if _terminated.is_set():
            raise SystemExit(143) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    for label, report in zip(("A", "B"), reports, strict=False):
        print_report(report, f" ({label})" if compare else "", show_days)
    if compare:
        console.print(compare_table(reports[0], reports[1]))
    if csv_out:
        write_csv(csv_out, reports)
        console.print(f"wrote {csv_out}")
    if html:
        _write_html(html, specs[0].journey, bodies)
    for path in (path for path in keeps if path is not None):
        console.print(
            f"kept the backtest's database: {path}\n  e.g. siyu summary {specs[0].journey} "
            f"--database sqlite:///{path}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # a path to copy is never broken at the terminal's width
        )


_terminated = threading.Event()


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    # Also remembered: raised inside one of SQLite's callbacks (the marketer SQL's progress
    # handler), the SystemExit is swallowed and only interrupts that query; the next tick
    # raises it again (siyu.cli.simulate_cmd._backtest's progress callback).
    _terminated.set()
    raise SystemExit(143)


def _report_page(
    spec: JourneySpec, settings: SimulationSettings, label: str, bodies: list[tuple[str, str]]
) -> Callable[[Session, SimulationReport], None]:
    """Reads the HTML report's sections from a backtest's database, before it is removed;
    the subtitle carries the report's notes (consent the data does not date)."""
    from siyu.reports.html_report import report_body

    heading = f"{label}: {spec.journey} v{spec.version}" if label else ""

    def read(session: Session, report: SimulationReport) -> None:
        ids = f"{label.lower()}-" if label else ""
        subtitle = "; note: ".join([settings.described(spec.timezone), *report.notes])
        bodies.append((heading, report_body(session, spec, subtitle, ids=ids)))

    return read


def _write_html(path: Path, journey: str, bodies: list[tuple[str, str]]) -> None:
    from siyu.reports.html_report import html_page, side_by_side

    if len(bodies) == 1:
        page = html_page(f"{journey} backtest", f'<main id="report">{bodies[0][1]}</main>')
    else:
        page = side_by_side(f"{journey} backtest: two versions", bodies)
    path.write_text(page, encoding="utf-8")  # an unwritable path: one line (siyu.cli.conventions)
    console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def _backtest(
    project: Project,
    spec: JourneySpec,
    settings: SimulationSettings,
    label: str,
    keep_as: Path | None,
    inspect: Callable[[Session, SimulationReport], None] | None = None,
) -> SimulationReport:
    """One version's backtest behind a progress bar."""
    from siyu.language.channel_kinds import channel_kinds
    from siyu.simulate.runner import simulate
    from siyu.storage.engine import database_url

    with Progress(
        TextColumn(f"[bold]{spec.journey}[/bold]{label}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)
        zone = ZoneInfo(spec.timezone)

        def tick(done: int, total: int, now: datetime) -> None:
            if _terminated.is_set():
                raise SystemExit(143)
            day = now.astimezone(zone).date().isoformat()
            bar.update(task, completed=done, total=total, description=day)

        return simulate(
            spec,
            database_url(),
            project.templates_dir,
            channel_kinds(project),
            settings,
            tick,
            policies=project.policies(),
            keep=keep_as,
            inspect=inspect,
        )
