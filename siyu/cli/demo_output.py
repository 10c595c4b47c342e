"""What `siyu demo` prints: a progress bar while the ticks run, then the journey's summary,
what the sandbox received and where to look next: commands that run as shown from the
project's root, without an activated virtual environment."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from siyu.cli.tables import summary_table
from siyu.demo import DemoResult, DemoSettings, TickProgress

# The demo journey's zone (journeys/first_purchase.yaml): ticks are shown in it, not in UTC.
ZONE = ZoneInfo("Asia/Shanghai")


@contextmanager
def tick_progress(console: Console) -> Iterator[Callable[[TickProgress], None]]:
    """A progress bar: tick i/n, the simulated time in the journey's zone, enrolled and sent
    so far, and the time left. Yields the callback `run_demo` reports each tick to."""
    progress = Progress(
        TextColumn("tick"),
        MofNCompleteColumn(),
        BarColumn(bar_width=6),  # the whole line fits 80 columns with 5,000 customers
        TextColumn("{task.fields[when]}"),
        TextColumn("enrolled {task.fields[enrolled]:,}"),
        TextColumn("sent {task.fields[sent]:,}"),
        TimeRemainingColumn(compact=True),
        TextColumn("left"),
        console=console,
    )
    task = progress.add_task("ticks", total=None, when="starting", enrolled=0, sent=0)

    def report(tick: TickProgress) -> None:
        when = tick.now.astimezone(ZONE).strftime("%m-%d %H:%M Asia/Shanghai")
        progress.update(
            task,
            completed=tick.index,
            total=tick.total,
            when=when,
            enrolled=tick.enrolled,
            sent=tick.sent,
        )

    with progress:
        yield report


def _command(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _venv_bin(name: str) -> str:
    """`name`'s script next to this Python (the venv's bin), relative to the current folder
    when inside it: the user may not have activated the venv."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        return name
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def pointers(settings: DemoSettings, result: DemoResult) -> list[tuple[str, str]]:
    """(label, command or address) to look at next; each runs as printed from the root."""
    siyu = _venv_bin("siyu")
    port = result.sandbox_url.rsplit(":", 1)[-1]
    sandbox = [siyu, "sandbox", "--state", str(result.state_file)]
    if port != "8765":  # the join links in the saved messages name the demo's port
        sandbox += ["--port", port]
    database = ["--database", result.database_url]
    found = [
        ("summary", _command(siyu, "summary", settings.journey, *database)),
    ]
    if result.example_customer is not None:  # every decision about one customer, with why
        customer = str(result.example_customer)
        at = ["--now", result.ended.astimezone(ZONE).isoformat(timespec="minutes")]
        found.append(
            ("explain", _command(siyu, "explain", settings.journey, customer, *at, *database))
        )
    return [
        *found,
        ("sandbox", _command(*sandbox)),
        ("inbox", f"http://127.0.0.1:{port}/_sandbox/inbox (while the sandbox runs)"),
        ("Prefect", _command(_venv_bin("prefect"), "server", "start")),
        ("", "then http://127.0.0.1:4200 shows the demo's flow runs"),
    ]


def print_demo_result(console: Console, settings: DemoSettings, result: DemoResult) -> None:
    data = result.data
    console.print(
        f"demo data: {data.customers:,} customers, {data.orders:,} orders; "
        f"{data.repurchased_within_14d:,} repurchase within 14 days, "
        f"{data.never_repurchased:,} never come back"
    )
    console.print(summary_table(result.summary))
    received = ", ".join(
        f"{name} {counts.get('messages', 0):,} ({counts.get('duplicates', 0)} duplicates)"
        for name, counts in sorted(result.sandbox_stats.get("channels", {}).items())
    )
    console.print(f"The sandbox received: {received or 'nothing'}", highlight=False)
    console.print(
        f"{result.ticks} ticks, {result.seconds_per_tick:.2f} s per tick (each one Prefect "
        "flow run)"
    )
    console.print("\n[bold]Where to look next[/bold] (from this folder)")
    width = max(len(label) for label, _ in pointers(settings, result))
    for label, where in pointers(settings, result):
        # soft_wrap: a command is never broken into two lines by the console
        console.print(f"  {label:<{width}}  {where}", markup=False, highlight=False, soft_wrap=True)
