"""Tick processes on one database share one access token: two `python -m bench.driver`
processes (as two flow runs, or a flow run and a partition worker, would be) tick the same
service-account journey at once, both send, and the sandbox counts one stable_token call.
Before provider_tokens each process fetched its own (bench/token_fetches.py: 18-20 calls for 10
ticks of 2 processes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import ProviderToken
from tests.bench_brand import one_step_brand, tick_command
from tests.conftest import ROOT, Shop, local

CUSTOMERS = 80
PROCESSES = 2


def sent_by(output: str) -> int:
    """Messages the driver's tick sent, from the counts it prints."""
    counts: dict[str, dict[str, int]] = json.loads(output.strip().splitlines()[-1])
    return sum(n for phase in counts.values() for label, n in phase.items() if label == "sent")


def test_tick_processes_on_one_database_fetch_one_token(
    tmp_path: Path,
    database_url: str,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
) -> None:
    one_step_brand(tmp_path, sessions, shop, "fleet", "service_account", CUSTOMERS)
    client = SandboxClient(sandbox.url)
    # sending lasts long enough (80 × 150 ms alone) for both processes to share it, even when
    # one starts seconds after the other on a loaded machine
    client.set_faults(latency_ms=150)
    command = tick_command(
        database_url, tmp_path, "fleet", "service_account", sandbox.url, "--batch-size", "5"
    )
    sent: list[int] = []
    for moment in (local(0, 11), local(1, 12)):  # enrolls; then every message is due
        runs = [
            subprocess.Popen(
                [*command, "--now", moment.isoformat()],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        results = [run.communicate(timeout=120) for run in runs]
        # each process's counts and log, to tell a held tick from one with nothing due
        told = "\n".join(f"--- process {i}:\n{out}\n{err}" for i, (out, err) in enumerate(results))
        assert [run.returncode for run in runs] == [0] * PROCESSES, told
        sent = [sent_by(out) for out, _ in results]
    assert sum(sent) == CUSTOMERS and all(sent), f"both processes sent: {sent}\n{told}"
    assert len(client.messages(channel="service_account")) == CUSTOMERS
    assert len(client.calls(endpoint="wechat.stable_token")) == 1
    with sessions() as session:
        assert session.scalars(select(ProviderToken.fetches)).all() == [1]
