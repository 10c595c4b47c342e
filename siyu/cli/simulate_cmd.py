"""`siyu simulate`: backtest one journey (or two versions side by side) over the database's
history; tables of the outcome per step and per day, and an optional CSV of everything."""

from __future__ import annotations

import csv
import errno
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from zoneinfo import ZoneInfo

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from siyu.cli.conventions import JOURNEY_HELP, cli_command, parse_moment
from siyu.errors import ConfigError
from siyu.language.durations import format_duration, parse_duration
from siyu.simulate.runner import SimulationReport, SimulationSettings, StepLedger
from siyu.storage.models import DeliveryStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.language.spec import JourneySpec
    from siyu.project import Project

console = Console()
# the per-day columns after `due`
STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
)


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
    every: Annotated[str, typer.Option(help="time between ticks, e.g. 1h, 15m")] = "1h",
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

    Every tick runs the real engine (enroll, goals, exits, every step's rules and rendering)
    through channels that only count. The database itself is not changed.
    """
    from siyu.cli.journey_arg import resolve_journey
    from siyu.project import Project
    from siyu.simulate.runner import setting_warnings

    project = Project.find()
    specs = [resolve_journey(project, journey)]
    if compare:
        specs.append(resolve_journey(project, compare))
    begin = parse_moment(start, specs[0].timezone, option="--start")
    try:
        end = begin + timedelta(days=days)
    except OverflowError:
        raise ConfigError(f"--start {start} plus --days {days} runs past the year 9999") from None
    settings = SimulationSettings(begin, end, _every(every))
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
) -> Callable[[Session], None]:
    """Reads the HTML report's sections from a backtest's database, before it is removed."""
    from siyu.reports.html_report import report_body

    zone = ZoneInfo(spec.timezone)
    subtitle = (
        f"backtest from {settings.start.astimezone(zone):%Y-%m-%d %H:%M} to "
        f"{settings.end.astimezone(zone):%Y-%m-%d %H:%M} ({spec.timezone}), a tick every "
        f"{format_duration(settings.every)}; nothing was sent"
    )
    heading = f"{label}: {spec.journey} v{spec.version}" if label else ""

    def read(session: Session) -> None:
        ids = f"{label.lower()}-" if label else ""
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
    inspect: Callable[[Session], None] | None = None,
) -> SimulationReport:
    """One version's backtest behind a progress bar."""
    from siyu.language.channel_kinds import channel_kinds
    from siyu.simulate.runner import simulate
    from siyu.storage.engine import database_url

    with Progress(
        TextColumn(f"[bold]{spec.journey}[/bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)
        zone = ZoneInfo(spec.timezone)

        def tick(i: int, n: int, now: datetime) -> None:
            if _terminated.is_set():
                raise SystemExit(143)
            day = now.astimezone(zone).date().isoformat()
            bar.update(task, completed=i, total=n, description=day)

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


def print_report(report: SimulationReport, label: str, show_days: int) -> None:
    s = report.settings
    enrolled = sum(v for k, v in report.enrollments.items() if k != "goal_reached")
    console.print(
        f"\n[bold]{report.journey}{label}[/bold]: {report.ticks} ticks every "
        f"{format_duration(s.every)} from "
        f"{s.start.astimezone(ZoneInfo(report.timezone)):%Y-%m-%d %H:%M} {report.timezone} "
        f"over {(s.end - s.start).days} days, "
        f"{report.customers} customers — {report.seconds:.1f} s "
        f"({report.seconds / max(report.ticks, 1) * 1000:.0f} ms per tick)\n"
        f"enrolled {enrolled}, exited {report.enrollments['exited']}, completed "
        f"{report.enrollments['completed']}, goal reached {report.enrollments['goal_reached']}"
    )
    console.print("\n[bold]per step[/bold] (from the ledger)")
    console.print(_steps_table(report))
    for line in _skip_reasons(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    ordered = sorted(report.days)
    shown = ordered if show_days == 0 else ordered[:show_days]
    console.print(
        f"\n[bold]per day[/bold] ({report.timezone}): the messages due and what became of them"
    )
    console.print(_days_table(report, shown))
    if report.volume:
        console.print("\n[bold]per day[/bold]: messages handed to each channel")
        console.print(_volume_table(report, shown))
    if show_days and len(ordered) > show_days:
        console.print(f"first {show_days} of {len(ordered)} days; --show-days 0 for all")
    channels = sorted(report.volume)
    volume = ", ".join(f"{c} {sum(report.volume[c].values())}" for c in channels) or "none"
    console.print(
        f"expected message volume per channel: {volume}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


# The tables fit 80 columns, a terminal's or a pipe's (rich's width there): nothing is cut
# (tests/tools/test_simulate.py). Skip reasons go on lines of their own under the table.


def _steps_table(report: SimulationReport) -> Table:
    steps = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    steps.add_column("step")
    for column in ("due", "sent", "deferred", "failed", "quota hits", "skipped"):
        steps.add_column(column, justify="right")
    for step_id, ledger in report.steps.items():
        steps.add_row(
            step_id,
            f"{ledger.total():,}",
            f"{ledger.total(DeliveryStatus.SENT, DeliveryStatus.PENDING):,}",
            f"{ledger.total(DeliveryStatus.DEFERRED):,}",
            f"{ledger.total(DeliveryStatus.FAILED):,}",
            f"{report.quota_hits(step_id):,}",
            f"{ledger.total(DeliveryStatus.SKIPPED):,}",
        )
    return steps


def _skip_reasons(report: SimulationReport) -> list[str]:
    lines = []
    for step_id, ledger in report.steps.items():
        reasons = ", ".join(
            f"{why} {n:,}" for why, n in ledger.reasons(DeliveryStatus.SKIPPED) if why is not None
        )
        if reasons:
            lines.append(f"  {step_id} skipped: {reasons}")
    return lines


def _days_table(report: SimulationReport, days: list[date]) -> Table:
    """A day's enrollments and the outcomes of the messages its ticks handled (`due`, split
    by status), in the journey's zone."""
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    for column in ("day", "enrolled", "exited", "goal", "due", *STATUSES):
        table.add_column(str(column), justify="left" if column == "day" else "right")
    for day in days:
        counts = report.days[day]
        table.add_row(
            day.isoformat(),
            f"{counts['enrolled']:,}",
            f"{counts['exited']:,}",
            f"{counts['goal_reached']:,}",
            f"{report.day_total(day):,}",
            *(f"{report.day_total(day, status):,}" for status in STATUSES),
        )
    return table


def _volume_table(report: SimulationReport, days: list[date]) -> Table:
    """The messages handed to each channel per day (a column per channel)."""
    channels = sorted(report.volume)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("day")
    for channel in channels:
        table.add_column(channel, justify="right")
    for day in days:
        table.add_row(day.isoformat(), *(f"{report.volume[c][day]:,}" for c in channels))
    return table


def compare_table(a: SimulationReport, b: SimulationReport) -> Table:
    table = Table(
        title=f"A: {a.journey} vs B: {b.journey}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    for column in ("measure", "A", "B", "B − A"):
        table.add_column(column, justify="left" if column == "measure" else "right")

    def row(name: str, x: int, y: int) -> None:
        table.add_row(name, str(x), str(y), f"{y - x:+d}")

    for key in ("exited", "completed", "goal_reached"):
        row(key, a.enrollments[key], b.enrollments[key])
    for step in dict.fromkeys([*a.steps, *b.steps]):
        ca, cb = a.steps.get(step, StepLedger()), b.steps.get(step, StepLedger())
        for outcome in sorted({*ca, *cb}):
            row(f"{step} {outcome}", ca.get(outcome, 0), cb.get(outcome, 0))
    for channel in sorted({*a.volume, *b.volume}):
        va, vb = a.volume.get(channel, Counter()), b.volume.get(channel, Counter())
        row(f"volume {channel}", sum(va.values()), sum(vb.values()))
    return table


def write_csv(path: Path, reports: list[SimulationReport]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["version", "journey", "day", "measure", "count"])
        for label, report in zip("AB", reports, strict=False):
            for day in sorted(report.days):
                for measure, n in sorted(report.days[day].items()):
                    writer.writerow([label, report.journey, day.isoformat(), measure, n])
            for channel, volume in sorted(report.volume.items()):
                for day, n in sorted(volume.items()):
                    writer.writerow(
                        [label, report.journey, day.isoformat(), f"volume:{channel}", n]
                    )
