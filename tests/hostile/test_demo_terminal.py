"""`siyu demo` as a new user sees it: run in a real 80-column terminal (tmux), its screen is
read back and checked: the summary cuts no step name, channel or reason, times are shown in
the journey's zone, and the "where to look next" commands run as printed from the project's
folder — the summary answers, the sandbox serves the demo's messages and their join links
resolve.

tmux is a terminal emulator: the screen it captures is what a person reads. On a laptop
without tmux the test is skipped with the reason; in CI (`CI` set, as `.ci/run` runs) a
missing tmux is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.project_copy import copy_project

ROOT = Path(__file__).resolve().parents[2]
SIYU = Path(sys.executable).parent / "siyu"

# One demo for the module, on one xdist worker (--dist loadgroup); session-scoped fixtures, so
# that another module's test run in between never makes the worker run the demo again.
pytestmark = pytest.mark.xdist_group("demo-terminal")
PROJECT_FILES = (
    "journeys",
    "templates",
    "channels.yaml",
    "policies.yaml",
    "segments.yaml",
    "alerts.yaml",
    "prefect.toml",
)
WIDTH = 80
DONE = "DEMO-EXIT-STATUS"


def tmux_binary() -> str:
    found = shutil.which("tmux")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("tmux is required in CI (.ci/run installs the Debian package)")
    pytest.skip("tmux is not installed (apt-get install tmux); CI runs this test")


class Terminal:
    """One tmux session of WIDTH columns on a private server socket (never the user's)."""

    def __init__(self, tmux: str, cwd: Path, env: dict[str, str]) -> None:
        self.tmux = tmux
        self.socket = f"siyu-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        self._run("new-session", "-d", "-s", "demo", "-x", str(WIDTH), "-y", "60", "-c", str(cwd))
        self._run("set-option", "-g", "history-limit", "10000")

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=True,
        )
        return done.stdout

    def type(self, line: str) -> None:
        self._run("send-keys", "-t", "demo", "-l", "--", line)
        self._run("send-keys", "-t", "demo", "Enter")

    def screen(self, joined: bool = False) -> str:
        """The whole scrollback as the terminal shows it: one line per screen row, or with
        `joined` the lines the terminal wrapped joined again (what a copy-paste gives)."""
        return self._run("capture-pane", "-p", *(["-J"] if joined else []), "-t", "demo", "-S", "-")

    def run(self, command: str | list[str], timeout: float) -> tuple[int, str]:
        """Type `command` (its lines as printed, each followed by Enter), wait for it to
        finish; its exit status and the screen."""
        lines = [command] if isinstance(command, str) else command
        marker = f"{DONE}-{uuid.uuid4().hex[:6]}"
        for line in lines[:-1]:
            self.type(line)
        self.type(f"{lines[-1]}; echo {marker}=$?")
        deadline = time.monotonic() + timeout
        pattern = re.compile(rf"^{marker}=(\d+)$", re.MULTILINE)
        while time.monotonic() < deadline:
            found = pattern.search(self.screen())
            if found:
                return int(found.group(1)), self.screen()
            time.sleep(0.5)
        raise AssertionError(f"{lines!r} did not finish in {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"], capture_output=True, timeout=30
        )


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"), PROJECT_FILES)


@pytest.fixture(scope="session")
def terminal(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    tmux = tmux_binary()
    env = {
        "PATH": "/usr/bin:/bin",  # the venv is NOT activated, as for a new user
        "HOME": str(tmp_path_factory.mktemp("home")),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect")),
        # A fresh PREFECT_HOME: Prefect's local API creates its database first, which takes
        # long on a busy machine (its default wait is 20 s; the test harness waits 120 s).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PS1": "$ ",
    }
    term = Terminal(tmux, project, env)
    yield term
    term.close()


@pytest.fixture(scope="session")
def demo_screen(terminal: Terminal) -> str:
    # A short demo: few customers and days; port 0 so parallel tests never share a port.
    status, screen = terminal.run(
        f"{SIYU} demo --customers 400 --days 4 --sandbox-port 0", timeout=300
    )
    assert status == 0, screen
    return screen


@pytest.fixture(scope="session")
def pointers(terminal: Terminal, demo_screen: str) -> dict[str, tuple[str, list[str]]]:
    """The "where to look next" entries by command (summary, explain, sandbox, server): the
    label above, and the command's lines exactly as printed."""
    found: dict[str, tuple[str, list[str]]] = {}
    label = ""
    for line in _after(terminal.screen(joined=True), "Where to look next")[1:]:
        if line.startswith("    "):
            found.setdefault(label, (label, []))[1].append(line.strip())
        elif line.startswith("  "):
            label = line.strip()
        else:
            break
    return {lines[0].split()[1]: (text, lines) for text, lines in found.values()}


def _one_line(lines: list[str]) -> str:
    """What the shell runs: the continuation lines joined."""
    return " ".join(line.removesuffix("\\").strip() for line in lines)


def test_pointers_fit_80_columns(pointers: dict[str, tuple[str, list[str]]]) -> None:
    assert set(pointers) == {"summary", "explain", "sandbox", "server"}
    for _, lines in pointers.values():
        assert all(len(line) + 4 <= WIDTH for line in lines), lines
        assert all(line.endswith(" \\") for line in lines[:-1]), lines


def _after(screen: str, heading: str) -> list[str]:
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if heading in line)
    return lines[start:]


def test_the_summary_cuts_no_word_at_80_columns(demo_screen: str) -> None:
    assert "…" not in demo_screen  # rich's mark of a cut cell
    assert "anonymous usage data" not in demo_screen  # Prefect's notice (a fresh PREFECT_HOME)
    assert all(len(line) <= WIDTH for line in demo_screen.splitlines())
    table = _after(demo_screen, "  channel ")
    lines = table[: next(n for n, line in enumerate(table) if line.startswith("Why:"))]
    steps = ("join-group", "day3-care", "day7-content", "day14-repurchase")
    rows = {
        line.split()[0]: (line.split(), lines[n + 1].split())
        for n, line in enumerate(lines)
        if line.strip().startswith(steps)
    }
    # Each step's name and counts, its channel whole on the line below.
    assert {step: channel for step, (_, channel) in rows.items()} == {
        "join-group": ["wecom_group_invite"],
        "day3-care": ["wecom"],
        "day7-content": ["service_account"],
        "day14-repurchase": ["sms"],
    }
    for counts, _ in rows.values():
        assert len(counts) == 6 and all(c.replace(",", "").isdigit() for c in counts[1:])
    # Each reason whole, on its own line, with its count.
    why = _after(demo_screen, "Why:")
    why = why[: next(n for n, line in enumerate(why) if line.startswith("The sandbox received"))]
    reasons = [line.split() for line in why if re.match(r"^ +\d", line)]
    assert reasons and all(len(r) == 2 for r in reasons)
    assert "no_address:wecom_external_userid" in {r[1] for r in reasons}


def test_times_are_shown_in_the_journeys_zone(demo_screen: str) -> None:
    progress = [line for line in demo_screen.splitlines() if line.startswith("tick ")]
    assert progress, demo_screen
    final = progress[-1]
    # The last tick of 4 days at 12 h from 10:00 on day 30 (2026-10-01 Asia/Shanghai).
    assert re.search(r"tick 9/9 .* 10-05 10:00 Asia/Shanghai enrolled \d+ sent \d+ ", final), final
    assert "+00:00" not in demo_screen and "UTC" not in demo_screen


def test_the_summary_and_explain_commands_run_as_printed(
    terminal: Terminal, pointers: dict[str, tuple[str, list[str]]]
) -> None:
    _, lines = pointers["summary"]
    assert _one_line(lines).startswith(f"{SIYU} summary first-purchase-care --database sqlite:")
    status, screen = terminal.run(lines, timeout=120)
    assert status == 0, screen
    assert screen.count("first-purchase-care: ") == 2, screen  # the demo's and the command's
    _, lines = pointers["explain"]
    command = _one_line(lines)
    assert re.match(
        rf"{SIYU} explain first-purchase-care \d+ --now 2026-10-05T10:00\+08:00 ", command
    )
    status, screen = terminal.run(lines, timeout=120)
    assert status == 0, screen
    assert "join-group" in terminal.screen(joined=True).split(lines[-1])[-1]


def test_the_sandbox_serves_the_demos_messages_as_printed(
    terminal: Terminal, pointers: dict[str, tuple[str, list[str]]]
) -> None:
    label, lines = pointers["sandbox"]
    command = _one_line(lines)
    assert command.startswith(f"{SIYU} sandbox --state var/sandbox-state.json --port ")
    inbox = re.search(r"http://127\.0\.0\.1:\d+/_sandbox/inbox", label).group(0)  # type: ignore[union-attr]
    assert inbox.split(":")[2].split("/")[0] == command.split("--port ")[1].split()[0]
    for line in lines:  # runs in the foreground until the session is killed
        terminal.type(line)
    page = _wait_for(inbox)
    count = int(re.search(r"<p>(\d+) messages", page).group(1))  # type: ignore[union-attr]
    assert count > 0
    joins = sorted(set(re.findall(r'href="(http://127\.0\.0\.1:\d+/_sandbox/join/\w+)"', page)))
    assert joins, "the join-group messages carry their join link"
    for link in joins:
        answer = httpx.get(link, timeout=10, trust_env=False)
        assert answer.status_code == 200 and "Joined the customer group" in answer.text


def _wait_for(url: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(url, timeout=5, trust_env=False)
            if answer.status_code == 200:
                return answer.text
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer in {timeout} s")
        time.sleep(0.5)
