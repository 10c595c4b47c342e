"""What `siyu simulate` prints and writes: the per-step and per-day tables (80 columns, in a
terminal or a pipe), the comparison of two versions, the CSV."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.table import Table

from siyu.language.durations import format_duration
from siyu.simulate.runner import SimulationReport, StepLedger
from siyu.storage.models import DeliveryStatus

console = Console()
# the per-day columns after `due`
STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.SKIPPED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
)


def print_report(report: SimulationReport, label: str, show_days: int) -> None:
    s = report.settings
    enrolled = sum(v for k, v in report.enrollments.items() if k != "goal_reached")
    console.print(
        f"\n[bold]{report.journey}{label}[/bold]: {report.ticks} ticks "
        f"({_ticks_at(s.every)}) from "
        f"{s.start.astimezone(ZoneInfo(report.timezone)):%Y-%m-%d %H:%M} {report.timezone} "
        f"over {(s.end - s.start).days} days, "
        f"{report.customers} customers — {report.seconds:.1f} s "
        f"({report.seconds / max(report.ticks, 1) * 1000:.0f} ms per tick)\n"
        f"enrolled {enrolled}, exited {report.enrollments['exited']}, completed "
        f"{report.enrollments['completed']}, goal reached {report.enrollments['goal_reached']}"
    )
    for note in report.notes:
        console.print(
            f"note: {note}", style="yellow", markup=False, highlight=False, soft_wrap=True
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


def _ticks_at(every: timedelta | None) -> str:
    """Where the ticks fell (siyu.simulate.runner.SimulationSettings)."""
    each = "at each moment something can happen"
    return f"{each}, at least every {format_duration(every)}" if every else each


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
