"""A channel's rate limit holds for the whole fleet (siyu/channels/rate_store.py): every
partition, process and deployment books its calls in one bucket in the database. Before, each
partition had its own bucket, so N partitions sent N times the provider's limit."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.scenario import write_project
from siyu.channels.rate_store import DatabaseRateBucket, shared_rate_limits
from siyu.engine.context import Partition
from siyu.engine.receipts import outcome_labels
from siyu.engine.send_step import run_step
from siyu.engine.tick import run_tick
from siyu.engine.versions import ensure_journey
from siyu.project import Project
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.engine import write_session
from siyu.storage.models import Journey, RateBucket
from tests.conftest import ROOT, Shop, local

RATE, BURST = 40.0, 5
PARTITIONS = 3
BUYERS = 60  # per journey


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_two_buckets_of_one_channel_draw_on_one_balance(
    sessions: sessionmaker[Session],
) -> None:
    """Two processes' buckets (two objects here) on one key: the second waits for what the
    first took, as one bucket would; another key is another balance."""
    clock = Clock()

    def bucket(key: str) -> DatabaseRateBucket:
        return DatabaseRateBucket(
            sessions, key, RATE, BURST, clock=lambda: clock.now, sleep=clock.sleep
        )

    first, second, other = bucket("sms:a"), bucket("sms:a"), bucket("sms:b")
    for _ in range(BURST):
        first.acquire()
    assert clock.slept == []  # the burst was there
    second.acquire()
    assert clock.slept == [pytest.approx(1 / RATE)]  # the burst is spent for the key
    other.acquire()  # a key of its own: its own burst
    assert len(clock.slept) == 1
    clock.now += 10  # refilled, up to the burst only
    for _ in range(BURST):
        second.acquire()
    assert len(clock.slept) == 1
    first.acquire()
    assert len(clock.slept) == 2
    with sessions() as session:
        assert sorted(session.scalars(select(RateBucket.key))) == ["sms:a", "sms:b"]


def test_a_broken_store_falls_back_to_the_processes_own_bucket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that cannot book (here: no rate_buckets table) never stops a send: the
    process keeps the limit on its own and says so once."""
    from siyu.storage.engine import make_engine, make_sessionmaker

    empty = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    slept: list[float] = []
    bucket = DatabaseRateBucket(empty, "sms:a", RATE, BURST, sleep=slept.append)
    for _ in range(3 * BURST):
        bucket.acquire()
    assert slept and all(0 < s <= 10 * BURST / RATE for s in slept)  # still limited
    warnings = [r for r in caplog.records if "rate_buckets" in r.getMessage()]
    assert len(warnings) == 1


def _project(tmp_path: Path) -> Project:
    """Two one-step webhook journeys, and channels.yaml with the webhook limited to RATE calls
    a second with a burst of BURST."""
    root = tmp_path / "brand"
    (root / "journeys").mkdir(parents=True)
    text = (ROOT / "channels.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "    path: /hooks/siyu\n",
        f"    path: /hooks/siyu\n    rate_limit: {{per_second: {RATE:g}, burst: {BURST}}}\n",
        1,
    )
    (root / "channels.yaml").write_text(text, encoding="utf-8")
    for journey in ("hooks-a", "hooks-b"):
        write_project(root / "journeys", journey, "webhook")
    (root / "journeys" / "templates").rename(root / "templates")
    return Project(root)


def test_two_journeys_with_three_partitions_each_keep_the_channels_rate(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
) -> None:
    project = _project(tmp_path)
    specs = [project.journey("hooks-a"), project.journey("hooks-b")]
    with write_session(sessions) as session:
        for spec in specs:
            ensure_journey(session, spec, local(0))
    for i in range(BUYERS):
        shop.order(shop.customer(f"顾客{i}"), local(0, 10), seq=1)
    later = local(1, 12)
    # each partition of each journey has channels of its own, as each worker process has
    contexts = [
        project.engine_context(
            sessions, project.build_channels(sandbox.url, rate_limits=shared_rate_limits(sessions))
        )
        for _ in range(2 * PARTITIONS)
    ]
    for spec in specs:
        run_tick(contexts[0], spec, local(0, 11))  # enrolls; the step is due a day later
    with sessions() as session:
        ids = {
            spec.journey: session.scalar(select(Journey.id).where(Journey.name == spec.journey))
            for spec in specs
        }
    sent: list[int] = []
    lock = threading.Lock()

    def partition(index: int) -> None:
        spec = specs[index // PARTITIONS]
        counts = run_step(
            contexts[index],
            spec,
            spec.steps[0],
            later,
            ids[spec.journey],
            Partition(index % PARTITIONS, PARTITIONS),
        )
        with lock:
            sent.append(outcome_labels(counts)["sent"])

    threads = [threading.Thread(target=partition, args=(i,)) for i in range(2 * PARTITIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for ctx in contexts:
        for channel in ctx.channels.values():
            channel.close()

    client = SandboxClient(sandbox.url)
    assert sum(sent) == 2 * BUYERS and len(sent) == 2 * PARTITIONS
    assert len(client.messages(channel="webhook")) == 2 * BUYERS  # each once
    arrivals = sorted(call["at"] for call in client.calls() if "webhook" in call["endpoint"])
    assert len(arrivals) == 2 * BUYERS
    # The bucket books calls at most BURST + RATE in any second, so 120 calls take at least
    # (120 - BURST) / RATE = 2.9 s; six buckets of their own (one per partition) let them all
    # through in 0.4 s. Arrivals may bunch on a loaded machine (a request booked on time can
    # reach the sandbox late), hence twice the bound per second.
    span = timedelta(seconds=arrivals[-1] - arrivals[0])
    assert span >= timedelta(seconds=(2 * BUYERS - BURST) / RATE * 0.9)
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= 2 * (BURST + RATE), f"{busiest} calls in one second"


def test_booking_inside_a_write_transaction_does_not_wait_for_itself(
    sessions: sessionmaker[Session],
) -> None:
    """On SQLite a thread inside a write transaction (a token fetched under its row's lock)
    would wait busy_timeout (30 s) for its own lock: it keeps its own bucket for that call."""
    bucket = DatabaseRateBucket(sessions, "wecom:a", RATE, BURST)
    with write_session(sessions):
        started = time.monotonic()
        bucket.acquire()
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("throttle", [True, False])
def test_a_partition_worker_keeps_the_flows_throttle(database_url: str, throttle: bool) -> None:
    """The flow's `throttle=False` (the local sandbox only) reaches its worker processes too:
    before, they kept the channels' limits, now one shared bucket for the fleet, and the
    process mode sent at the SMS limit (20 calls/s) while the flow had asked for none."""
    from tasks.context import worker_context

    ctx = worker_context(str(ROOT), database_url, "http://127.0.0.1:9", throttle)
    try:
        limited = {name: ch.rt.http._limiter is not None for name, ch in ctx.channels.items()}
    finally:
        for channel in ctx.channels.values():
            channel.close()
    assert set(limited.values()) == {throttle}
