"""Rich tables for the terminal."""

from __future__ import annotations

from collections import Counter

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from siyu.reports.step_summary import JourneySummary

_COUNTS = ("sent", "pending", "deferred", "failed", "skipped")


def summary_table(summary: JourneySummary) -> RenderableType:
    """Per-step counts, then why messages were skipped or failed, each reason on its own
    line: at 80 columns no step name, channel or reason is cut (the widest row is about 60
    columns)."""
    table = Table(
        title=f"{summary.journey}: {summary.enrolled:,} enrolled, {summary.exited:,} left "
        f"on repurchase/exit, {summary.completed:,} completed, "
        f"{summary.goal_reached:,} reached the goal",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    # The channel goes under its step: side by side they would not fit 80 columns.
    table.add_column("step\n  channel", no_wrap=True)
    for column in _COUNTS:
        table.add_column(column, justify="right", no_wrap=True)
    for step in summary.steps:
        name = Text(step.step_id)
        name.append(f"\n  {step.channel}", style="dim")
        table.add_row(name, *(f"{step.statuses.get(status, 0):,}" for status in _COUNTS))
    return Group(table, *_reasons(summary))


def _reasons(summary: JourneySummary) -> list[Text]:
    lines: list[Text] = []
    for step in summary.steps:
        for label, reasons in (("skipped", step.skipped), ("failed", step.failed)):
            if reasons:
                lines.append(Text(f"{step.step_id} {label}:", style="bold"))
                lines += _reason_lines(reasons)
    if lines:
        lines.insert(0, Text("Why:"))
    return lines


def _reason_lines(reasons: Counter[str]) -> list[Text]:
    return [Text(f"  {n:>7,}  {reason}") for reason, n in reasons.most_common()]
