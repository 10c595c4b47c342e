"""Rich tables for the terminal."""

from __future__ import annotations

from rich.table import Table

from siyu.reports.step_summary import JourneySummary


def summary_table(summary: JourneySummary) -> Table:
    table = Table(
        title=f"{summary.journey}: {summary.enrolled} enrolled, {summary.exited} left "
        f"on repurchase/exit, {summary.completed} completed, "
        f"{summary.goal_reached} reached the goal"
    )
    for column in ("step", "channel", "sent", "pending", "deferred", "failed", "skipped (why)"):
        table.add_column(
            column,
            justify="right" if column in ("sent", "pending", "deferred", "failed") else "left",
        )
    for step in summary.steps:
        skipped = ", ".join(f"{reason} {n}" for reason, n in step.skipped.most_common()) or "-"
        failed = str(step.statuses.get("failed", 0))
        if step.failed:
            failed += " (" + ", ".join(f"{r} {n}" for r, n in step.failed.most_common()) + ")"
        table.add_row(
            step.step_id,
            step.channel,
            str(step.statuses.get("sent", 0)),
            str(step.statuses.get("pending", 0)),
            str(step.statuses.get("deferred", 0)),
            failed,
            skipped,
        )
    return table
