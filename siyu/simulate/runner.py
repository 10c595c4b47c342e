"""A backtest: the real engine (siyu.engine.tick.run_tick) over a period of the database's own
history with a simulated clock, on a scratch copy, through channels that send nothing. The
clock moves from one moment at which a tick can change anything to the next
(siyu.simulate.moments), so the result does not depend on a step size.

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
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from siyu.engine.context import EngineContext
from siyu.engine.marketer_sql import journeys_dir_of
from siyu.engine.receipts import StepCounts
from siyu.engine.tick import run_tick
from siyu.language.durations import format_duration
from siyu.language.spec import JourneySpec
from siyu.policies import Policies
from siyu.settings import settings as settings_of_project
from siyu.simulate.consent_replay import ConsentReplay, Undated
from siyu.simulate.dry_run import dry_run_channels
from siyu.simulate.moments import Moments
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

# (seconds simulated so far, seconds to simulate, the tick's time)
Progress = Callable[[int, int, datetime], None]
# Provider codes of a retry that mean a provider quota stopped the message; a frequency cap
# (reason code `cap`) is a quota hit too (language v2 caps).
QUOTA_PROVIDER_CODES = ("quota", "rate")


@dataclass(frozen=True)
class SimulationSettings:
    """A backtest from `start` to `end`: a tick at `start`, at each moment in between at which
    a tick can change anything (siyu.simulate.moments), and at `end`. `every`: also a tick at
    least this often, from `start` (the result is the same with or without them)."""

    start: datetime
    end: datetime
    every: timedelta | None = None

    def cadence(self) -> Iterator[datetime]:
        """The ticks `every` asks for: start, start + every, ... up to the end (none without)."""
        if self.every is None:
            return
        now = self.start
        while now <= self.end:
            yield now
            now += self.every

    def described(self, timezone: str) -> str:
        """'backtest from ... to ... (zone), a tick at each moment something can happen;
        no message really sent'."""
        zone = ZoneInfo(timezone)
        often = f" and at least every {format_duration(self.every)}" if self.every else ""
        return (
            f"backtest from {self.start.astimezone(zone):%Y-%m-%d %H:%M} to "
            f"{self.end.astimezone(zone):%Y-%m-%d %H:%M} ({timezone}), a tick at each moment "
            f"something can happen{often}; no message really sent"
        )


def setting_warnings(spec: JourneySpec, settings: SimulationSettings) -> list[str]:
    """What in these settings would keep a step from ever coming due in the backtest, said
    before it runs: a step due later after entry than the backtest lasts (with the entry's
    lookback). The ticks themselves cannot miss a step: there is one at each due time."""
    warnings: list[str] = []
    # an entry event up to `lookback` before the start enrolls at the first tick
    reach = settings.end - settings.start + spec.entry.lookback
    days = format_duration(settings.end - settings.start)
    for step in spec.steps:
        if isinstance(step.at, timedelta) and step.at > reach:
            warnings.append(
                f"step '{step.id}' comes due {format_duration(step.at)} after entry, after "
                f"the backtest's {days} have ended: no customer reaches it; use more --days"
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
    moments: list[datetime] = field(default_factory=list)  # the ticks' times, in order
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
    ctx = EngineContext(  # the live engine's window for late events (siyu/project.py)
        sessions,
        templates_dir,
        dict(channels),
        late_events=timedelta(hours=settings_of_project().late_events_hours),
        policies=policies or Policies(),
    )
    report = SimulationReport(spec.journey, settings, customers, timezone=spec.timezone)
    zone = ZoneInfo(spec.timezone)
    if consents.undated is not None:
        report.notes.append(_undated_note(consents.undated, settings, zone))
    started = time.perf_counter()
    moments = Moments(spec, sessions, settings.start, settings.end, journeys_dir_of(templates_dir))
    cadence = settings.cadence()
    ticked = next(cadence, None)  # the cadence's next tick: its first is the start
    span = max(int((settings.end - settings.start).total_seconds()), 1)
    now: datetime | None = settings.start
    while now is not None:
        # consent changes need no tick of their own: they matter only to a send, which
        # happens at a moment; all of them up to `now` are applied before its tick
        consents.advance(now)
        day = now.astimezone(zone).date()
        for channel in channels.values():
            channel.today = day
        moments.before_tick(now)
        results = run_tick(ctx, spec, now, moments.phases_at(now))
        for phase, result in results.items():
            for label, n in result.labels().items():  # for showing (the CSV's measures)
                key = (
                    label
                    if phase in ("enroll", "goals", "exits", "complete")
                    else f"{phase}:{label}"
                )
                report.days[day][key] += n
            for outcomes in result.sends():
                report.outcomes[day].update(outcomes)
        report.moments.append(now)
        if progress is not None:  # by simulated time: the number of ticks is not known ahead
            progress(int((now - settings.start).total_seconds()), span, now)
        moments.after_tick(now, results)
        while ticked is not None and ticked <= now:
            ticked = next(cadence, None)
        now = _next_tick(now, settings.end, moments.next_after(now), ticked)
    report.seconds = time.perf_counter() - started
    report.ticks = len(report.moments)
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


def _next_tick(
    now: datetime, end: datetime, moment: datetime | None, cadence: datetime | None
) -> datetime | None:
    """The tick after `now`: the next moment or cadence tick, whichever comes first; the
    end once neither is left before it; None after the end."""
    if now >= end:
        return None
    ahead = [at for at in (moment, cadence) if at is not None and at <= end]
    return min(ahead) if ahead else end


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
