"""The demo: a fresh SQLite database with a retail brand's data, the local channel sandbox,
and the canonical journey run through its real Prefect flow over weeks of simulated time."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from db.demo_data import DemoSpec, DemoSummary, generate
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from siyu.language.spec import JourneySpec
from siyu.project import Project
from siyu.reports.step_summary import JourneySummary, summarize


@dataclass(frozen=True)
class DemoSettings:
    journey: str = "first-purchase-care"
    database: Path = Path("var/demo.db")
    customers: int = 5000
    start_day: int = 30  # of the 60 days of order history
    days: int = 21
    every: timedelta = timedelta(hours=6)
    first_tick_hour: int = 8  # local hour of the first (and last) tick: 08:00, 14:00, 20:00, 02:00


@dataclass
class DemoResult:
    data: DemoSummary
    summary: JourneySummary
    ticks: int
    seconds_per_tick: float
    sandbox_stats: dict[str, Any]
    messages_file: Path
    database_url: str


def tick_times(settings: DemoSettings, spec: DemoSpec) -> Iterator[datetime]:
    start = spec.start + timedelta(days=settings.start_day, hours=settings.first_tick_hour)
    now, end = start, start + timedelta(days=settings.days)
    while now <= end:
        yield now
        now += settings.every


def run_demo(
    project: Project, settings: DemoSettings, progress: Callable[[int, int, datetime], None]
) -> DemoResult:
    import time

    from flows.journey_flow import journey_tick
    from siyu.sandbox.client import SandboxClient
    from siyu.sandbox.server import start_sandbox

    settings.database.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{settings.database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{settings.database}"
    os.environ["SIYU_DATABASE_URL"] = url  # the flow reads the database from the environment
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    demo_spec = DemoSpec(customers=settings.customers)
    with sessions() as session, session.begin():
        data = generate(session, demo_spec)
    spec: JourneySpec = project.journey(settings.journey)

    with start_sandbox() as sandbox:
        client = SandboxClient(sandbox.url)
        # Staff confirm WeCom mass messages as soon as they appear, as a busy team would.
        client.set_faults(auto_confirm=True)
        times = list(tick_times(settings, demo_spec))
        started = time.perf_counter()
        for index, now in enumerate(times, start=1):
            journey_tick(
                journey=settings.journey, now=now.isoformat(), channel_base_url=sandbox.url
            )
            progress(index, len(times), now)
        seconds = (time.perf_counter() - started) / max(len(times), 1)
        stats = client.stats()
        messages_file = settings.database.parent / "sandbox-messages.json"
        messages_file.write_text(
            json.dumps(client.messages(), ensure_ascii=False, indent=1, default=str),
            encoding="utf-8",
        )
    with sessions() as session:
        summary = summarize(session, spec)
    engine.dispose()
    return DemoResult(data, summary, len(times), seconds, stats, messages_file, url)
