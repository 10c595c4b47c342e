"""A backtest: the real engine (siyu.engine.tick.run_tick) over a period of the database's own
history with a simulated clock, on a scratch copy, through channels that send nothing.

What it cannot know from today's database: consents and suppressions are as they are now,
not as they were on each simulated day.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, select

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.language.spec import JourneySpec
from siyu.simulate.dry_run import dry_run_channels
from siyu.simulate.scratch import add_missing_indexes, copy_database, forget_journey
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import (
    Customer,
    Delivery,
    DeliveryStatus,
    Enrollment,
    ReasonCode,
    reason_text,
)

Progress = Callable[[int, int, datetime], None]
# Provider codes of a retry that mean a provider quota stopped the message; a frequency cap
# (reason code `cap`) is a quota hit too (language v2 caps).
QUOTA_PROVIDER_CODES = ("quota", "rate")


@dataclass(frozen=True)
class SimulationSettings:
    start: datetime
    end: datetime
    every: timedelta = timedelta(hours=1)

    def ticks(self) -> Iterator[datetime]:
        now = self.start
        while now <= self.end:
            yield now
            now += self.every


@dataclass
class SimulationReport:
    journey: str
    settings: SimulationSettings
    customers: int
    ticks: int = 0
    seconds: float = 0.0
    # local day → "enrolled" / "exited" / "goal_reached" / "<step>:<outcome>" → count
    days: dict[date, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    volume: dict[str, Counter[date]] = field(default_factory=dict)  # channel → day → messages
    steps: dict[str, Counter[str]] = field(default_factory=dict)  # from the ledger: status[:why]
    quota: Counter[str] = field(default_factory=Counter)  # step → rows held by a cap or quota
    enrollments: Counter[str] = field(default_factory=Counter)  # status, goal_reached

    def day_total(self, day: date, outcome: str) -> int:
        """Sum over steps of one outcome (sent, skipped, deferred, failed, due) on a day."""
        counts = self.days.get(day, Counter())
        if outcome == "due":
            return sum(n for k, n in counts.items() if ":" in k)
        return sum(n for k, n in counts.items() if k.split(":")[1:2] == [outcome])

    def quota_hits(self, step: str) -> int:
        return self.quota[step]


def _fast_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # The copy is thrown away: durability is not needed, speed is.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    # Every tick reads the same indexes again: keep up to 1 GiB of pages in the process
    # instead of SQLite's default 2 MiB (each miss is a read system call), and sort in memory.
    cursor.execute("PRAGMA cache_size=-1048576")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def simulate(
    spec: JourneySpec,
    database_url: str,
    templates_dir: Path,
    channel_kinds: dict[str, str],
    settings: SimulationSettings,
    progress: Progress | None = None,
    workdir: Path | None = None,
) -> SimulationReport:
    with tempfile.TemporaryDirectory(prefix="siyu-simulate-", dir=workdir) as tmp:
        url = copy_database(database_url, Path(tmp) / "scratch.db")
        engine = make_engine(url)
        event.listen(engine, "connect", _fast_sqlite)
        add_missing_indexes(engine)
        try:
            return _run(spec, engine, templates_dir, channel_kinds, settings, progress)
        finally:
            engine.dispose()


def _run(
    spec: JourneySpec,
    engine: Any,
    templates_dir: Path,
    channel_kinds: dict[str, str],
    settings: SimulationSettings,
    progress: Progress | None,
) -> SimulationReport:
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        forget_journey(session, spec.journey)
        customers = session.scalar(select(func.count()).select_from(Customer)) or 0
    channels = dry_run_channels(channel_kinds)
    ctx = EngineContext(sessions, templates_dir, dict(channels))
    report = SimulationReport(spec.journey, settings, customers)
    zone = ZoneInfo(spec.timezone)
    times = list(settings.ticks())
    started = time.perf_counter()
    for index, now in enumerate(times, start=1):
        day = now.astimezone(zone).date()
        for channel in channels.values():
            channel.today = day
        for phase, counts in run_tick(ctx, spec, now).items():
            for outcome, n in counts.items():
                key = (
                    outcome
                    if phase in ("enroll", "goals", "exits", "complete")
                    else (f"{phase}:{outcome}")
                )
                report.days[day][key] += n
        if progress is not None:
            progress(index, len(times), now)
    report.seconds = time.perf_counter() - started
    report.ticks = len(times)
    report.volume = {name: c.volume for name, c in channels.items() if c.volume}
    with sessions() as session:
        _read_ledger(session, spec, report)
    return report


def _read_ledger(session: Any, spec: JourneySpec, report: SimulationReport) -> None:
    report.steps = {step.id: Counter() for step in spec.steps}
    columns = (
        Delivery.step_id,
        Delivery.status,
        Delivery.reason_code,
        Delivery.reason_detail,
        Delivery.provider_code,
    )
    rows = session.execute(
        select(*columns, func.count())
        .where(Delivery.journey_name == spec.journey)
        .group_by(*columns)
    )
    for step_id, status, code, detail, provider_code, n in rows:
        # failures by their code alone (the detail is a template's or a provider's words)
        why = str(code) if status == DeliveryStatus.FAILED else reason_text(code, detail)
        report.steps.setdefault(step_id, Counter())[f"{status}:{why}" if why else status] += n
        if code == ReasonCode.CAP or (
            code == ReasonCode.RETRY and (provider_code or "").startswith(QUOTA_PROVIDER_CODES)
        ):
            report.quota[step_id] += n
    for status, n in session.execute(
        select(Enrollment.status, func.count())
        .where(Enrollment.journey_name == spec.journey)
        .group_by(Enrollment.status)
    ):
        report.enrollments[status] += n
    report.enrollments["goal_reached"] = (
        session.scalar(
            select(func.count()).where(
                Enrollment.journey_name == spec.journey, Enrollment.goal_reached_at.is_not(None)
            )
        )
        or 0
    )
