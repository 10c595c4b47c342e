"""A tick's partitions on a real dask.distributed cluster (tasks/partition_runners.py): a
scheduler and two worker processes on 127.0.0.1 over TCP, the database of the run (PostgreSQL
under CI's PostgreSQL run), the sandbox's SMS API, and `siyu tick` as an operator runs it with
SIYU_PARTITION_RUNNER=dask. The step runs on both workers at once; one of them is SIGKILLed in
the middle of its partition; the tick goes on on the other, and the ticks after the lease
finish the job. The sandbox receives every due message exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.idle_tick import write_live_project
from siyu.engine.versions import ensure_journey
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.engine import write_session
from siyu.storage.models import Delivery
from tests.conftest import ROOT, Shop, local
from tests.production.prefect_server import free_port

BUYERS = 800  # 400 per partition: four SendBatchSms calls of 100 each
LATENCY_MS = 700  # per provider call, until both workers run their partition
SLOW_LATENCY_MS = 3000  # per provider call from then on: the kill lands inside a partition


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Cluster:
    """A scheduler and two workers, each its own process, as an operator would start them."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.environment = environment
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _start(self, name: str, *arguments: str) -> None:
        log = open(self.environment["SIYU_TEST_LOGS"] + f"/{name}.log", "wb")  # noqa: SIM115
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *arguments],
            cwd=ROOT,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._start(
            "scheduler",
            "distributed.cli.dask_scheduler",
            *("--host", "127.0.0.1", "--port", port, "--no-dashboard", "--no-show"),
        )
        for name in ("worker-a", "worker-b"):
            self._start(
                name,
                "distributed.cli.dask_worker",
                self.address,
                *("--name", name, "--host", "127.0.0.1", "--nthreads", "1"),
                *("--no-nanny", "--no-dashboard"),  # no nanny: a killed worker stays dead
            )
        with self.client() as client:
            client.wait_for_workers(2, timeout=90)

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout=90)

    def stop(self) -> None:
        for process in self.processes.values():
            _stop(process)


@pytest.fixture
def cluster(tmp_path: Path, database_url: str, prefect_harness: None) -> Iterator[Cluster]:
    from prefect.settings import PREFECT_API_URL

    logs = tmp_path / "logs"
    logs.mkdir()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # the workers import tasks/ from the project's checkout
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "SIYU_TEST_LOGS": str(logs),
    }
    running = Cluster(environment)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _sending_by_partition(sessions: sessionmaker[Session], parts: int) -> list[int]:
    """Ledger rows claimed and not yet answered (`sending`), per step partition (enrollment id
    modulo the partition count, siyu/engine/scans.py)."""
    with sessions() as session:
        ids = session.scalars(select(Delivery.enrollment_id).where(Delivery.status == "sending"))
        found = Counter(enrollment_id % parts for enrollment_id in ids)
    return [found[part] for part in range(parts)]


def _executing(client: Any) -> dict[str, int]:
    """How many tasks each worker of the cluster is running right now."""
    # Each worker names itself in the same call: the client's cached scheduler_info() may not
    # list a worker yet (seen once in CI: a KeyError on its address).
    found = client.run(lambda dask_worker: (dask_worker.name, dask_worker.state.executing_count))
    return {str(name): int(count) for name, count in found.values()}


def test_a_tick_on_a_dask_cluster_sends_every_message_once_through_a_killed_worker(
    tmp_path: Path,
    database_url: str,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
    cluster: Cluster,
) -> None:
    project = tmp_path / "project"
    spec = write_live_project(project, batched_sms=True)
    with write_session(sessions) as session:
        ensure_journey(session, spec, local(0))
    for i in range(BUYERS):
        shop.order(shop.customer(f"顾客{i}"), local(0, 10), seq=1)
    client = SandboxClient(sandbox.url)
    client.set_faults(latency_ms=LATENCY_MS)
    environment = {
        **cluster.environment,
        "SIYU_DATABASE_URL": database_url,
        "SIYU_PROJECT_DIR": str(project),
        "SIYU_STEP_PARTITIONS": "2",
        "SIYU_PARTITION_RUNNER": "dask",
        "SIYU_DASK_ADDRESS": cluster.address,
    }

    def tick(moment: Any) -> list[str]:
        return [
            str(Path(sys.executable).parent / "siyu"), "tick", spec.journey,
            "--now", moment.isoformat(), "--channel-base-url", sandbox.url,
        ]  # fmt: skip

    first = subprocess.Popen(tick(local(1, 12)), cwd=project, env=environment)
    deadline = time.monotonic() + 120
    busy: dict[str, int] = {}
    with cluster.client() as dask:
        while busy != {"worker-a": 1, "worker-b": 1}:
            assert first.poll() is None, "the tick ended before both workers ran the step"
            assert time.monotonic() < deadline, f"both workers never ran the step at once: {busy}"
            busy = _executing(dask)
            time.sleep(0.05)
    # From here each provider call takes long, so the kill below lands inside a partition
    # however slow this loop is on a loaded machine (once a worker had sent all of its
    # partition before the kill, and the test's premise failed).
    client.set_faults(latency_ms=SLOW_LATENCY_MS)
    while min(_sending_by_partition(sessions, 2)) == 0:  # both partitions hold claimed rows
        assert first.poll() is None, "the tick ended before both partitions claimed their rows"
        assert time.monotonic() < deadline, "both partitions never held claimed rows at once"
        time.sleep(0.05)
    received_before = len(client.messages(channel="sms"))
    assert received_before < BUYERS
    # Each worker runs one partition, and both partitions are mid-send: either worker will do.
    victim = "worker-b"
    cluster.processes[victim].send_signal(signal.SIGKILL)  # in the middle of its partition
    assert cluster.processes[victim].wait(timeout=30) == -signal.SIGKILL

    assert first.wait(timeout=240) == 0, "the tick finishes on the worker left"
    with sessions() as session:
        after_kill = Counter(session.scalars(select(Delivery.status)))
    assert after_kill["sent"] >= received_before and after_kill["sent"] < BUYERS, after_kill

    client.set_faults()
    for minutes in (0, 15, 30):  # the same tick rerun, then ticks past the lease
        moment = local(1, 12) + timedelta(minutes=minutes)
        subprocess.run(tick(moment), cwd=project, env=environment, check=True, timeout=240)

    # SMS carries no idempotency key to the provider: the sandbox keys a message by its phone
    # and text, and counts a second copy as a duplicate
    received = Counter(m["key"] for m in client.messages(channel="sms"))
    with sessions() as session:
        statuses = Counter(session.scalars(select(Delivery.status)))
    assert len(received) == BUYERS, "every due message, none lost"
    assert set(received.values()) == {1} and client.stats()["duplicates"] == [], "none twice"
    assert statuses == {"sent": BUYERS}
