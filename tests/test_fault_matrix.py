"""The fault matrix on PostgreSQL, through the deployed flow (`siyu tick`, with the tests' Prefect
API) and the sandbox's SMS batch API, which deduplicates nothing: a second copy of a message
is a duplicate at the sandbox.

| fault | threads, inside a batch | threads, between batches | 2 worker processes, inside |
|---|---|---|---|
| PostgreSQL restarted (`pg_ctl restart -m immediate`) | x | x | x |
| the tick's process SIGKILLed | x | x | x |
| one partition worker process SIGKILLed | | | x |
| the Prefect server SIGKILLed, started again 12 s later | x | | |

Inside a batch: once the provider has applied a call of it (its answer may be lost). Between
batches: the tick stopped (SIGSTOP) when every row it claimed is recorded, faulted there.

Every case ends, after the same tick rerun and ticks past the lease, with every due message
delivered exactly once and no row left `sending`. The database is a PostgreSQL cluster of the
module's own (started from the machine's binaries, like .ci/start-postgres.sh), so that it can
be restarted without cutting the other tests' server; the module runs in CI's PostgreSQL pass
(SIYU_TEST_POSTGRES_URL set), where those binaries are installed.

Elsewhere: a worker machine's death (tests/production/test_dead_runs.py) and a Dask worker's
(tests/test_dask_cluster.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from bench.idle_tick import write_live_project
from siyu.engine.versions import ensure_journey
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.engine import make_engine, make_sessionmaker, write_session
from siyu.storage.models import Base, Delivery, DeliveryStatus
from tests.conftest import ROOT, Shop, local
from tests.production.prefect_server import free_port, start_server, stop, wait_healthy

# Two groups, each on one xdist worker with a private cluster of its own: the cases wait on
# the provider's latency much of the time, so two at once use the cores better.
A = pytest.mark.xdist_group("fault-matrix-a")
B = pytest.mark.xdist_group("fault-matrix-b")

BUYERS = 600  # SendBatchSms calls of 100; two partitions of 300
LATENCY_MS = 500  # per provider call, so that the fault lands inside a batch


@dataclass
class PrivateCluster:
    url: str  # the server's SQLAlchemy URL
    data: Path
    pg_ctl: list[str]  # the command, run as the cluster's owner

    def restart_immediately(self) -> None:
        """As a crash would: every session cut, nothing flushed cleanly."""
        subprocess.run(  # the server's output to its log: a pipe would outlive pg_ctl
            [*self.pg_ctl, "-D", str(self.data), "-l", str(self.data.parent / "log")]
            + ["-m", "immediate", "-w", "restart"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.pg_ctl, "-D", str(self.data), "-m", "fast", "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )


@pytest.fixture(scope="module")  # one per xdist worker: one per group
def cluster() -> Iterator[PrivateCluster]:
    if not os.environ.get("SIYU_TEST_POSTGRES_URL"):
        pytest.skip("PostgreSQL-only: runs in CI's PostgreSQL pass (SIYU_TEST_POSTGRES_URL)")
    # not under pytest's own temporary directory: its parent is closed to the server's owner
    directory = Path(tempfile.mkdtemp(prefix="siyu-fault-matrix-pg-"))
    started = subprocess.run(
        ["bash", str(ROOT / ".ci" / "start-postgres.sh"), str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    running = PrivateCluster(
        started.stdout.strip().splitlines()[-1],
        directory / "data",
        [*owner, str(binaries / "pg_ctl")],
    )
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def brand_url(cluster: PrivateCluster) -> Iterator[str]:
    """A schema of its own on the private cluster, with siyu's tables."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(cluster.url, pool_pre_ping=True)  # the test restarts the server
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{cluster.url}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def frozen_between_batches(tick: subprocess.Popen[bytes], sessions: Any) -> bool:
    """Stop the tick (SIGSTOP) at a moment when it holds no claimed row: every batch it
    claimed is recorded and the next one is not claimed yet (it is deciding or rendering).
    Stopped and looked at again and again until such a moment; False if the tick ended."""
    deadline = time.monotonic() + 120
    while tick.poll() is None and time.monotonic() < deadline:
        tick.send_signal(signal.SIGSTOP)
        with sessions() as session:
            statuses = Counter(session.scalars(select(Delivery.status)))
        if not statuses[DeliveryStatus.SENDING] and 0 < statuses[DeliveryStatus.SENT] < BUYERS:
            return True
        tick.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    return False


def partition_worker(tick_pid: int) -> int:
    """One of the tick's partition worker processes: children of its forkserver
    (siyu/engine/partition_workers.py)."""
    import psutil

    for child in psutil.Process(tick_pid).children(recursive=True):
        parent = child.parent()
        if parent is not None and "forkserver" in " ".join(parent.cmdline()):
            return int(child.pid)
    raise AssertionError("the tick has no partition worker process")


def tick(journey: str, moment: datetime, sandbox_url: str) -> list[str]:
    return [
        str(Path(sys.executable).parent / "siyu"), "tick", journey,
        "--now", moment.isoformat(), "--channel-base-url", sandbox_url,
    ]  # fmt: skip


@dataclass
class PrivatePrefect:
    """A Prefect server on a port of its own, which a test kills and starts again there, with
    its database, as after a crash."""

    home: Path

    def __post_init__(self) -> None:
        self.port = free_port()
        self.process = start_server(self.home, self.port)
        self.url = wait_healthy(self.home, self.port).url

    def crash_for(self, seconds: float) -> None:
        self.process.kill()
        self.process.wait()
        time.sleep(seconds)
        self.process = start_server(self.home, self.port)
        wait_healthy(self.home, self.port)

    def stop(self) -> None:
        stop(self.process)


@pytest.fixture
def private_prefect(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[PrivatePrefect | None]:
    """A Prefect server of the case's own, to kill, when its fault is the server's; else None
    (the tests' shared API)."""
    if request.node.callspec.params["fault"] != "prefect-server-killed":
        yield None
        return
    server = PrivatePrefect(tmp_path / "prefect")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("fault", "runner", "where"),
    [
        pytest.param("database-restart", "threads", "inside", marks=A),
        pytest.param("database-restart", "processes", "inside", marks=B),
        pytest.param("database-restart", "threads", "between", marks=A),
        pytest.param("tick-killed", "threads", "inside", marks=A),
        pytest.param("tick-killed", "processes", "inside", marks=B),
        pytest.param("tick-killed", "threads", "between", marks=B),
        pytest.param("partition-worker-killed", "processes", "inside", marks=B),
        pytest.param("prefect-server-killed", "threads", "inside", marks=A),
    ],
)
def test_every_message_once_through_a_fault(
    fault: str,
    runner: str,
    where: str,
    tmp_path: Path,
    brand_url: str,
    cluster: PrivateCluster,
    sandbox: RunningSandbox,
    prefect_harness: None,
    private_prefect: PrivatePrefect | None,
) -> None:
    from prefect.settings import PREFECT_API_URL

    project = tmp_path / "project"
    spec = write_live_project(project, batched_sms=True)
    engine = make_engine(brand_url)
    sessions = make_sessionmaker(engine)
    with write_session(sessions) as session:
        ensure_journey(session, spec, local(0))
    shop = Shop(sessions)
    for i in range(BUYERS):
        shop.order(shop.customer(f"顾客{i}"), local(0, 10), seq=1)
    client = SandboxClient(sandbox.url)
    client.set_faults(latency_ms=LATENCY_MS)
    environment = {
        **os.environ,
        "PREFECT_API_URL": private_prefect.url if private_prefect else str(PREFECT_API_URL.value()),
        "SIYU_DATABASE_URL": brand_url,
        "SIYU_PROJECT_DIR": str(project),
        "SIYU_STEP_PARTITIONS": "2" if runner == "processes" else "1",
        "SIYU_PARTITION_RUNNER": runner,
        # between batches: one provider call per batch, so that the gaps are many
        **({"SIYU_BATCH_SIZE": "100"} if where == "between" else {}),
    }
    output = tmp_path / "first-tick.log"
    with output.open("wb") as log:
        first = subprocess.Popen(
            tick(spec.journey, local(1, 12), sandbox.url),
            cwd=project,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 180
    while not client.messages(channel="sms"):  # the provider applied a call of the batch
        assert first.poll() is None, "the tick ended before the fault"
        assert time.monotonic() < deadline, "the tick never sent"
        time.sleep(0.02)
    if where == "between":
        assert frozen_between_batches(first, sessions), "the tick never paused between batches"
    assert len(client.messages(channel="sms")) < BUYERS, "the fault would come too late"
    if fault == "database-restart":
        cluster.restart_immediately()
        first.send_signal(signal.SIGCONT)
        first.wait(timeout=600)  # it fails or completes: the ticks after settle it either way
    elif private_prefect is not None:
        private_prefect.crash_for(12)  # the tick's Prefect client rides it out, or its run fails
        first.wait(timeout=600)
    elif fault == "partition-worker-killed":
        os.kill(partition_worker(first.pid), signal.SIGKILL)
        first.wait(timeout=600)  # the pool is broken: the step fails, the rerun settles it
    else:
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL

    client.set_faults()
    for minutes in (0, 15, 30):  # the same tick rerun, then ticks past the lease
        moment = local(1, 12) + timedelta(minutes=minutes)
        subprocess.run(
            tick(spec.journey, moment, sandbox.url),
            cwd=project,
            env=environment,
            check=True,
            timeout=300,
            capture_output=True,
        )

    received = Counter(m["key"] for m in client.messages(channel="sms"))
    with sessions() as session:
        statuses = Counter(session.scalars(select(Delivery.status)))
    engine.dispose()
    said = output.read_text(errors="replace")
    in_flight = re.search(r"(\d+) message\(s\) still in flight", said)
    print(  # `pytest -s`: the matrix's row
        f"\n{fault} / {runner} / {where}: first tick exit {first.returncode}, "
        f"left in flight {in_flight.group(1) if in_flight else 0}; "
        f"delivered {len(received)} of {BUYERS}, "
        f"twice {sum(1 for n in received.values() if n > 1)}, ledger {dict(statuses)}"
    )
    assert len(received) == BUYERS, "every due message, none lost"
    assert set(received.values()) == {1} and client.stats()["duplicates"] == [], "none twice"
    assert statuses == {"sent": BUYERS}, "none left in flight"
