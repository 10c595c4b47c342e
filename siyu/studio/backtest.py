"""A backtest started from the studio: "what would this version have done over the last N
days". The editor's text when it differs from the file (not saved yet), side by side with the
file as it is on disk; otherwise the file, side by side with its last committed version
(siyu.studio.editing.committed_text) when there is one and it differs. Each is replayed by
`siyu simulate`'s machinery over its own scratch copy of the database (never the live one),
in a background thread; one at a time per journey file. The page reads the run's progress
and, once done, the report body of each version (siyu.reports.html_report)."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from siyu.errors import SiyuError
from siyu.language.channel_kinds import channel_kinds
from siyu.language.durations import format_duration
from siyu.language.problems import Problem
from siyu.language.spec import JourneySpec
from siyu.project import Project
from siyu.reports.html_report import report_body
from siyu.simulate.runner import (
    SimulationReport,
    SimulationSettings,
    setting_warnings,
    simulate,
)
from siyu.storage.models import Customer
from siyu.studio.checking import check_on_disk, check_text
from siyu.studio.database import existing_database
from siyu.studio.editing import committed_text

log = logging.getLogger(__name__)

KEEP_FINISHED = 20  # finished backtests kept for their pages
HOUR = 3600  # the progress counts hours of simulated time

# the page's labels of the versions: the editor's text not saved yet, the file on disk, the
# file's last commit
Which = Literal["edited", "this_version", "committed"]


class BacktestError(SiyuError):
    """Why a backtest cannot run, in one line for the page."""


class Stopped(Exception):
    """The studio is stopping: the backtest unwinds (its scratch copy is removed)."""


@dataclass
class Version:
    which: Which
    spec: JourneySpec
    # the report's sections in each of the page's languages ("zh", "en"), once its backtest
    # is done: rendered then, in the backtest's thread, as its scratch copy goes away
    bodies: dict[str, str] = field(default_factory=dict)


@dataclass
class Backtest:
    id: str
    key: str  # the journey file's, as the studio addresses it
    days: int
    state: Literal["running", "done", "failed"] = "running"
    done: int = 0  # hours of simulated time replayed, over every version
    total: int = 0
    day: str = ""  # the simulated day being replayed
    running: Which | None = None  # the version being replayed
    versions: list[Version] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


class Backtests:
    """A studio's backtests, by id: one running at a time per journey file."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self._runs: dict[str, Backtest] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def get(self, backtest_id: str) -> Backtest | None:
        return self._runs.get(backtest_id)

    def start(
        self, project: Project, key: str, path: Path, days: int, edited: str | None = None
    ) -> Backtest:
        """A new backtest of the file at `path` (and of `edited`, the editor's text of it), or
        the one of this file still running."""
        with self._lock:
            for run in self._runs.values():
                if run.key == key and run.state == "running":
                    return run
            self._forget_old()
            run = Backtest(secrets.token_hex(8), key, days)
            self._runs[run.id] = run
            thread = threading.Thread(
                target=self._run,
                args=(run, project, path, edited),
                name=f"backtest-{key}",
                daemon=True,
            )
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return run

    def stop(self, seconds: float = 30) -> None:
        """Stop the backtests still running and wait for them (the studio is stopping)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(seconds)

    def _forget_old(self) -> None:
        finished = [k for k, run in self._runs.items() if run.state != "running"]
        for old in finished[: max(len(finished) - KEEP_FINISHED, 0)]:
            del self._runs[old]

    def _run(self, run: Backtest, project: Project, path: Path, edited: str | None) -> None:
        try:
            run.versions, run.notes = versions(project, path, edited)
            replay(run, project, self.database_url, self._stopping)
            run.state = "done"
        except Stopped:
            run.error, run.state = "the studio stopped", "failed"
        except SiyuError as error:
            run.error, run.state = _one_line(str(error)), "failed"
        except Exception as error:  # a bug: the page says so in a line, the log has the rest
            log.exception("backtest of %s failed", run.key)
            run.error, run.state = _one_line(f"{type(error).__name__}: {error}"), "failed"


def versions(
    project: Project, path: Path, edited: str | None = None
) -> tuple[list[Version], list[str]]:
    """The editor's text when it differs from the file, then the file now; else the file now
    and its last committed version when there is one that differs. Notes about what was left
    out. Each text is checked with `siyu validate`'s rules, as a save would check it."""
    text, on_disk = check_on_disk(project, path)
    if text is None:
        raise BacktestError(on_disk.problems[0].message)
    if edited is not None and edited != text.replace("\r\n", "\n"):
        checked = check_text(project, path, edited)
        if checked.spec is None or checked.problems:
            raise BacktestError(f"the editor's text: {_problems(checked.problems)}")
        if on_disk.spec is None or on_disk.problems:
            note = f"the saved file is left out: {_problems(on_disk.problems)}"
            return [Version("edited", checked.spec)], [note]
        return [Version("edited", checked.spec), Version("this_version", on_disk.spec)], []
    if on_disk.spec is None or on_disk.problems:
        raise BacktestError(f"{path.name}: {_problems(on_disk.problems)}")
    found = [Version("this_version", on_disk.spec)]
    committed, _why = committed_text(project, path)
    if committed is None or committed == text:
        return found, ["same_as_committed"]
    before = check_text(project, path, committed)
    if before.spec is None or before.problems:
        return found, [f"the committed version is left out: {_problems(before.problems)}"]
    return [*found, Version("committed", before.spec)], []


def replay(
    run: Backtest, project: Project, database_url: str | None, stopping: threading.Event
) -> None:
    """Each version over the last `run.days` days, a tick at each moment something can
    happen, on its own scratch copy; `stopping` set: Stopped at the next tick."""
    if not database_url or _customers(database_url) == 0:
        raise BacktestError("no customers in the database: nothing to replay")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    settings = SimulationSettings(end - timedelta(days=run.days), end)
    hours = run.days * 24
    run.total = hours * len(run.versions)
    kinds = channel_kinds(project)
    policies = project.policies()
    for n, version in enumerate(run.versions):
        run.notes += setting_warnings(version.spec, settings)
        run.running = version.which
        report = simulate(
            version.spec,
            database_url,
            project.templates_dir,
            kinds,
            settings,
            _progress(run, n * hours, ZoneInfo(version.spec.timezone), stopping),
            policies=policies,
            inspect=_read_body(version, settings, f"{'ab'[n]}-"),
        )
        run.notes += [note for note in report.notes if note not in run.notes]  # consent's


def _customers(database_url: str) -> int:
    engine = existing_database(database_url)
    if engine is None:
        raise BacktestError(f"no database at {database_url.split('@')[-1]}")
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(Customer)) or 0
    except SQLAlchemyError as error:
        raise BacktestError(f"the database cannot be read: {error.__class__.__name__}") from None
    finally:
        engine.dispose()


def _progress(
    run: Backtest, before: int, zone: ZoneInfo, stopping: threading.Event
) -> Callable[[int, int, datetime], None]:
    def tick(seconds: int, _total: int, now: datetime) -> None:
        if stopping.is_set():
            raise Stopped
        run.done = before + seconds // HOUR
        run.day = now.astimezone(zone).date().isoformat()

    return tick


def _read_body(
    version: Version, settings: SimulationSettings, ids: str
) -> Callable[[Session, SimulationReport], None]:
    subtitles = {
        "en": settings.described(version.spec.timezone),
        "zh": _described_zh(settings, version.spec.timezone),
    }

    def read(session: Session, _report: SimulationReport) -> None:  # its notes: run.notes
        version.bodies = {
            lang: report_body(session, version.spec, subtitle, ids=ids, lang=lang)
            for lang, subtitle in subtitles.items()
        }

    return read


def _described_zh(settings: SimulationSettings, timezone: str) -> str:
    """SimulationSettings.described in Chinese."""
    zone = ZoneInfo(timezone)
    often = f"，且至少每 {format_duration(settings.every)} 一次" if settings.every else ""
    return (
        f"回测 {settings.start.astimezone(zone):%Y-%m-%d %H:%M} 至 "
        f"{settings.end.astimezone(zone):%Y-%m-%d %H:%M}（{timezone}），在每个可能发生变化的"
        f"时刻运行{often}；没有真正发送任何消息"
    )


def _problems(problems: list[Problem]) -> str:
    if not problems:
        return "it cannot be read"
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"line {first.line}: {first.message}{more}"


def _one_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "failed"
