"""A backtest: the real engine (siyu.engine.tick.run_tick) over a period of the database's own
history with a simulated clock, on a scratch copy, through channels that send nothing.

Consents and suppressions are as they were at each simulated moment, where the data records
it (siyu/simulate/consent_replay.py, from the history in consent_changes): an opt-out in
October still lets September's messages go, a consent given yesterday does not reach last
year. A consent the data does not date before some moment (written before the history
existed, imported without `consent_at`) is kept as first recorded until then, and the
report says for how many customers (SimulationReport.notes).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from siyu.engine.context import EngineContext
from siyu.engine.receipts import StepCounts
from siyu.engine.tick import run_tick
from siyu.language.durations import format_duration
from siyu.language.spec import JourneySpec
from siyu.policies import Policies
from siyu.simulate.consent_replay import ConsentReplay, Undated
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

    def described(self, timezone: str) -> str:
        """'backtest from ... to ... (zone), a tick every ...; no message really sent'."""
        zone = ZoneInfo(timezone)
        return (
            f"backtest from {self.start.astimezone(zone):%Y-%m-%d %H:%M} to "
            f"{self.end.astimezone(zone):%Y-%m-%d %H:%M} ({timezone}), a tick every "
            f"{format_duration(self.every)}; no message really sent"
        )


def setting_warnings(spec: JourneySpec, settings: SimulationSettings) -> list[str]:
    """What in these settings would keep a step from ever sending in the backtest, said before
    it runs: every tick inside quiet hours, or a step's window shorter than the cadence."""
    warnings: list[str] = []
    zone = ZoneInfo(spec.timezone)
    quiet = spec.quiet_hours
    # the times of day repeat; the first 2,000 ticks show every one of a sane cadence
    moments = list(islice(settings.ticks(), 2000))
    if quiet is not None and all(quiet.contains(m.astimezone(zone).time()) for m in moments):
        day = settings.start.astimezone(zone).date().isoformat()
        warnings.append(
            f"every tick falls inside quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M} "
            f"({spec.timezone}): marketing messages would wait for ever; start at a daytime "
            f"hour (--start {day}T10:00) or tick more often (--every 1h)"
        )
    every = format_duration(settings.every)
    for step in spec.steps:
        if not isinstance(step.at, timedelta) or step.within is None:
            continue
        window = step.within - step.at
        if window < settings.every:
            warnings.append(
                f"step '{step.id}': its window ({format_duration(window)}, from `at` to "
                f"`within`) is shorter than --every {every}: a tick may never fall inside it "
                "and the step would expire; use a shorter --every"
            )
    return warnings


class LedgerGroup(NamedTuple):
    """Ledger rows of one status and reason: the code alone for a failure (its detail is a
    template's or a provider's words), the code and detail otherwise (siyu.storage.models
    reason_text), None without a reason."""

    status: DeliveryStatus
    why: str | None = None

    @property
    def label(self) -> str:
        return f"{self.status}:{self.why}" if self.why else str(self.status)


@dataclass(frozen=True, eq=False)  # compared as the Mapping of its labels
class StepLedger(Mapping[str, int]):
    """One step's ledger rows counted by (status, reason). As a Mapping, by label
    (`sent`, `skipped:no_consent:marketing`), for showing only."""

    rows: Counter[LedgerGroup] = field(default_factory=Counter)

    def total(self, *statuses: DeliveryStatus) -> int:
        """Rows of these statuses, or all rows."""
        return sum(n for g, n in self.rows.items() if not statuses or g.status in statuses)

    def reasons(self, status: DeliveryStatus) -> list[tuple[str | None, int]]:
        """The reasons of one status's rows, the most common first."""
        return [(g.why, n) for g, n in self.rows.most_common() if g.status == status]

    def labels(self) -> Counter[str]:
        return Counter({group.label: n for group, n in self.rows.items()})

    def __getitem__(self, label: str) -> int:
        return self.labels()[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels())

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class SimulationReport:
    journey: str
    settings: SimulationSettings
    customers: int
    timezone: str = "UTC"  # the journey's: the days and the times shown are read there
    ticks: int = 0
    seconds: float = 0.0
    # local day → "enrolled" / "exited" / "goal_reached" / "<phase>:<label>" → count (shown)
    days: dict[date, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # local day → the typed outcomes of the messages due that day, every step of every version
    outcomes: dict[date, StepCounts] = field(default_factory=lambda: defaultdict(Counter))
    volume: dict[str, Counter[date]] = field(default_factory=dict)  # channel → day → messages
    steps: dict[str, StepLedger] = field(default_factory=dict)  # step → its ledger rows
    quota: Counter[str] = field(default_factory=Counter)  # step → rows held by a cap or quota
    enrollments: Counter[str] = field(default_factory=Counter)  # status, goal_reached
    notes: list[str] = field(default_factory=list)  # what the data could not tell the backtest

    def day_total(self, day: date, status: DeliveryStatus | None = None) -> int:
        """Messages due on a day over every step, or those whose row took `status`."""
        counts = self.outcomes.get(day, Counter())
        return sum(n for o, n in counts.items() if status is None or o.status == status)

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
    policies: Policies | None = None,
    keep: Path | None = None,
    inspect: Callable[[Session, SimulationReport], None] | None = None,
) -> SimulationReport:
    """Replay `spec` over a scratch copy of the database. `policies`: the project's contact
    pressure (policies.yaml's caps and fatigue, each channel's platform quota), which the
    live journey obeys and so the backtest does too (Project.policies()). `keep`: where to
    leave the copy afterwards (siyu explain, report and summary read it), instead of
    deleting it. `inspect`: called with a session on the copy and the report once the run is
    over (the HTML report reads its ledger there)."""
    with tempfile.TemporaryDirectory(prefix="siyu-simulate-", dir=workdir) as tmp:
        scratch = Path(tmp) / "scratch.db"
        engine = make_engine(copy_database(database_url, scratch))
        event.listen(engine, "connect", _fast_sqlite)
        add_missing_indexes(engine)
        try:
            report = _run(spec, engine, templates_dir, channel_kinds, settings, progress, policies)
            if inspect is not None:
                with make_sessionmaker(engine)() as session:
                    inspect(session, report)
        finally:
            engine.dispose()
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(scratch, keep)
        return report


def _run(
    spec: JourneySpec,
    engine: Any,
    templates_dir: Path,
    channel_kinds: dict[str, str],
    settings: SimulationSettings,
    progress: Progress | None,
    policies: Policies | None = None,
) -> SimulationReport:
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        forget_journey(session, spec.journey)
        customers = session.scalar(select(func.count()).select_from(Customer)) or 0
    consents = ConsentReplay(sessions, settings.start)  # as they were at `start`
    channels = dry_run_channels(channel_kinds)
    ctx = EngineContext(sessions, templates_dir, dict(channels), policies=policies or Policies())
    report = SimulationReport(spec.journey, settings, customers, timezone=spec.timezone)
    zone = ZoneInfo(spec.timezone)
    if consents.undated is not None:
        report.notes.append(_undated_note(consents.undated, settings, zone))
    times = list(settings.ticks())
    started = time.perf_counter()
    for index, now in enumerate(times, start=1):
        consents.advance(now)  # the changes since the previous tick, before this one
        day = now.astimezone(zone).date()
        for channel in channels.values():
            channel.today = day
        for phase, result in run_tick(ctx, spec, now).items():
            for label, n in result.labels().items():  # for showing (the CSV's measures)
                key = (
                    label
                    if phase in ("enroll", "goals", "exits", "complete")
                    else f"{phase}:{label}"
                )
                report.days[day][key] += n
            for outcomes in result.sends():
                report.outcomes[day].update(outcomes)
        if progress is not None:
            progress(index, len(times), now)
    report.seconds = time.perf_counter() - started
    report.ticks = len(times)
    report.volume = {name: c.volume for name, c in channels.items() if c.volume}
    with sessions() as session:
        _read_ledger(session, spec, report)
    return report


def _undated_note(undated: Undated, settings: SimulationSettings, zone: ZoneInfo) -> str:
    """'consent of 1,234 customer(s) is as the data first records it ... until <moment>'."""
    until = (
        "for the whole backtest"
        if undated.until > settings.end
        else f"until {undated.until.astimezone(zone):%Y-%m-%d %H:%M}"
    )
    return (
        f"consent of {undated.customers:,} customer(s) is as the data first records it "
        f"(today's, without history), not as it was, {until}; an import dates consents "
        "from a mapped consent_at column"
    )


def _read_ledger(session: Any, spec: JourneySpec, report: SimulationReport) -> None:
    report.steps = {step.id: StepLedger() for step in spec.steps}
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
        group = LedgerGroup(DeliveryStatus(status), why or None)
        report.steps.setdefault(step_id, StepLedger()).rows[group] += n
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
