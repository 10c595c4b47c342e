"""A tick killed with SIGKILL cannot close its partition worker pool: the workers end by
themselves once their owner is gone (siyu/engine/partition_workers.py, `_exit_with`), instead
of idling for ever with their memory and database connections (found after the fault matrix:
workers of a killed tick still there 13 minutes later)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import ROOT

OWNER = """
import functools, os, sys, time
from siyu.engine.partition_workers import PartitionWorkers
workers = PartitionWorkers(functools.partial(dict), 2)
print(workers._pool.submit(os.getpid).result(), flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_workers_of_a_killed_owner_end() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        worker = int(owner.stdout.readline())
        assert not _gone(worker)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        deadline = time.monotonic() + 20
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(worker), "the worker outlived the tick that owned it"
    finally:
        owner.kill()
