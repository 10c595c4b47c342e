"""The demo: a fresh SQLite database with a retail brand's data, the local channel sandbox,
and the canonical journey run through its real Prefect flow over weeks of simulated time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from siyu.language.spec import JourneySpec
from siyu.project import Project
from siyu.reports.step_summary import JourneySummary, summarize
from siyu.settings import export
from siyu.storage.demo_data import DemoSpec, DemoSummary, generate
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.migrate import upgrade
from siyu.storage.models import Delivery, Enrollment

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from siyu.sandbox.server import RunningSandbox

# The sandbox's usual port (channels.yaml's default base_url, `siyu sandbox`): the demo uses
# it when free, so the join links in its messages resolve when `siyu sandbox` serves the
# saved state afterwards.
SANDBOX_PORT = 8765


@dataclass(frozen=True)
class DemoSettings:
    journey: str = "first-purchase-care"
    database: Path = Path("var/demo.db")
    # Where the sandbox's messages, WeCom tasks and join ways are saved (`siyu sandbox
    # --state` loads them).
    state_file: Path = Path("var/sandbox-state.json")
    customers: int = 5000
    start_day: int = 30  # of the 60 days of order history
    days: int = 21
    # Each tick is one Prefect flow run, about 1 s of Prefect's own work on 2 cores: twice a
    # day keeps the demo near a minute. 10:00 sends; 22:00 falls in the journey's quiet hours
    # (20:00-08:00), so it enrolls and defers, and the next morning sends.
    every: timedelta = timedelta(hours=12)
    first_tick_hour: int = 10  # local hour (Asia/Shanghai) of the first tick
    sandbox_port: int = SANDBOX_PORT  # used when free, else any free port; 0: any free port


@dataclass(frozen=True)
class TickProgress:
    """What the progress bar shows after a tick."""

    index: int
    total: int
    now: datetime  # the tick's simulated time (UTC)
    enrolled: int  # so far
    sent: int  # ledger rows `sent` so far


@dataclass
class DemoResult:
    data: DemoSummary
    summary: JourneySummary
    ticks: int
    seconds_per_tick: float
    sandbox_stats: dict[str, Any]
    sandbox_url: str
    state_file: Path
    database_url: str
    example_customer: int | None  # one who received the most messages: `siyu explain` them
    ended: datetime  # the last tick's simulated time


def tick_times(settings: DemoSettings, spec: DemoSpec) -> Iterator[datetime]:
    start = spec.start + timedelta(days=settings.start_day, hours=settings.first_tick_hour)
    now, end = start, start + timedelta(days=settings.days)
    while now <= end:
        yield now
        now += settings.every


def _fresh_database(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def _start_sandbox(port: int) -> RunningSandbox:
    """The sandbox on 127.0.0.1:`port` when that port is free, else on a free port."""
    from siyu.sandbox.server import start_sandbox

    if port:
        with suppress(OSError):
            return start_sandbox(port=port)
    return start_sandbox()


def _counts(session: Session, journey: str) -> tuple[int, int]:
    enrolled = session.scalar(
        select(func.count()).select_from(Enrollment).where(Enrollment.journey_name == journey)
    )
    sent = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.journey_name == journey, Delivery.status == "sent")
    )
    return int(enrolled or 0), int(sent or 0)


def _example_customer(session: Session, journey: str) -> int | None:
    sent = func.count()
    return session.scalar(
        select(Delivery.customer_id)
        .where(Delivery.journey_name == journey, Delivery.status == "sent")
        .group_by(Delivery.customer_id)
        .order_by(sent.desc(), Delivery.customer_id)
        .limit(1)
    )


def run_demo(
    project: Project,
    settings: DemoSettings,
    progress: Callable[[TickProgress], None],
    journey_tick: Callable[..., Any],
) -> DemoResult:
    """`journey_tick`: the project's journey flow (the CLI loads it by its entrypoint)."""
    from siyu.sandbox.client import SandboxClient

    url = _fresh_database(settings.database)
    export(database_url=url)  # the flow (and its worker processes) read it from the settings
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    demo_spec = DemoSpec(customers=settings.customers)
    with sessions() as session, session.begin():
        data = generate(session, demo_spec)
    spec: JourneySpec = project.journey(settings.journey)
    times = list(tick_times(settings, demo_spec))

    with _start_sandbox(settings.sandbox_port) as sandbox:
        client = SandboxClient(sandbox.url)
        # Staff confirm WeCom mass messages as soon as they appear, as a busy team would.
        client.set_faults(auto_confirm=True)
        progress(TickProgress(0, len(times), times[0], 0, 0))
        started = time.perf_counter()
        for index, now in enumerate(times, start=1):
            # The sandbox has no rate limits: the client-side ones would only add sleeps.
            journey_tick(
                journey=settings.journey,
                now=now.isoformat(),
                channel_base_url=sandbox.url,
                throttle=False,
                channel_tags=False,  # no tag limits here; each tag costs an API call per task
            )
            with sessions() as session:
                enrolled, sent = _counts(session, settings.journey)
            progress(TickProgress(index, len(times), now, enrolled, sent))
        seconds = (time.perf_counter() - started) / max(len(times), 1)
        stats = client.stats()
        client.close()
        sandbox.state.save(settings.state_file)
    with sessions() as session:
        summary = summarize(session, spec)
        example = _example_customer(session, settings.journey)
    engine.dispose()
    return DemoResult(
        data,
        summary,
        len(times),
        seconds,
        stats,
        sandbox.url,
        settings.state_file,
        url,
        example,
        times[-1],
    )
