"""What `siyu demo` prints: a progress bar while the ticks run, then the journey's summary,
what the sandbox received and where to look next: commands that run as shown from the
project's root, without an activated virtual environment."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def shell_lines(words: list[str], width: int) -> list[str]:
    """A command as lines of at most `width` characters, broken between words with ` \\`
    (the shell's line continuation): pasted as shown, it runs as one command."""
    chunks: list[str] = []  # an option stays on one line with its value
    for word in (shlex.quote(w) for w in words):
        if chunks and chunks[-1].startswith("--") and " " not in chunks[-1]:
            if not word.startswith("--"):
                chunks[-1] += f" {word}"
                continue
        chunks.append(word)
    lines: list[str] = []
    current = ""
    for word in chunks:
        if current and len(current) + 1 + len(word) + 2 > width:
            lines.append(current + " \\")
            current = "  " + word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current]


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


@dataclass(frozen=True)
class Pointer:
    label: str
    command: list[str]  # runs as printed from the project's folder


DEMO_PREFECT_HOME = str(Path("var") / "prefect-home")


def use_demo_prefect_home() -> None:
    """Prefect's local API keeps its database in PREFECT_HOME: the demo's own under var/, not
    the user's ~/.prefect, which may hold a server's deployments and automations (one left
    there made Prefect's SQLite lock up and doubled the demo's ticks). A home or a server the
    user chose is kept."""
    if not os.environ.get("PREFECT_HOME") and not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_HOME"] = DEMO_PREFECT_HOME


def _prefect_home() -> list[str]:
    """The demo's own Prefect home, as the variable that points `prefect server start` at
    the demo's runs; nothing when the user chose the home."""
    home = os.environ.get("PREFECT_HOME", "")
    return [f"PREFECT_HOME={home}"] if home == DEMO_PREFECT_HOME else []


def pointers(settings: DemoSettings, result: DemoResult) -> list[Pointer]:
    """Where to look next: each a command that runs as printed from the project's folder."""
    siyu = _venv_bin("siyu")
    port = result.sandbox_url.rsplit(":", 1)[-1]
    sandbox = [siyu, "sandbox", "--state", str(result.state_file)]
    if port != "8765":  # the join links in the saved messages name the demo's port
        sandbox += ["--port", port]
    database = ["--database", result.database_url]
    found = [Pointer("the summary above, again:", [siyu, "summary", settings.journey, *database])]
    if result.example_customer is not None:  # every decision about one customer, with why
        customer = str(result.example_customer)
        at = ["--now", result.ended.astimezone(ZONE).isoformat(timespec="minutes")]
        found.append(
            Pointer(
                "every decision about the customer who received the most:",
                [siyu, "explain", settings.journey, customer, *at, *database],
            )
        )
    return [
        *found,
        Pointer(f"the messages: http://127.0.0.1:{port}/_sandbox/inbox once served by", sandbox),
        Pointer(
            "the flow runs: http://127.0.0.1:4200 once served by",
            [*_prefect_home(), _venv_bin("prefect"), "server", "start"],
        ),
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
    console.print("\n[bold]Where to look next[/bold] (commands to run from this folder)")
    width = min(console.width, 80) - 4
    for pointer in pointers(settings, result):
        console.print(f"  {pointer.label}", markup=False, highlight=False)
        for line in shell_lines(pointer.command, width):
            console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
