"""One Prefect test API for the whole run, shared by every pytest-xdist worker.

Prefect's `prefect_test_harness` starts a server per process: under `make test` (three
workers) that was three servers, each spending ~11 s of CPU on its database migrations before
answering (measured: `python -m uvicorn ... prefect.server.api.server:create_app` on 2 cores).
Here the first worker that needs a server starts one (the same command the harness runs, with
its own throwaway database) in a session of its own, so that it outlives the worker that
started it; the others find its address in the run's directory (RUN_DIRECTORY, which the
controller creates before the workers start, and they inherit). The controller stops it when the
run ends (`stop_shared_server`, from conftest's pytest_unconfigure). Without xdist the one
process is both.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

_INFO = "prefect-test-server.json"
# The environment variable naming the run's directory (read by the tests only, like
# SIYU_TEST_POSTGRES_URL; siyu's settings ignore it).
RUN_DIRECTORY = "SIYU_TEST_RUN_DIRECTORY"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start(directory: Path, startup_timeout: float) -> dict[str, object]:
    import prefect

    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_HOME": str(directory / "prefect-home"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": (
            f"sqlite+aiosqlite:///{directory / 'prefect-test.db'}"
        ),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = (directory / "prefect-test-server.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(Path(prefect.__file__).parent.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives the worker that started it; the controller stops it
    )
    deadline = time.monotonic() + startup_timeout
    while not _healthy(api_url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = (directory / "prefect-test-server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the Prefect test server did not start at {api_url}\n{tail}")
        time.sleep(0.25)
    return {"api_url": api_url, "pid": process.pid}


def _shared(directory: Path, startup_timeout: float) -> str:
    """The API URL of the run's server, started by whichever worker asks first."""
    directory.mkdir(parents=True, exist_ok=True)
    info = directory / _INFO
    with (directory / "prefect-test-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait while the first one starts it
        if not info.exists():
            info.write_text(json.dumps(_start(directory, startup_timeout)))
    return str(json.loads(info.read_text())["api_url"])


@contextmanager
def shared_prefect_api(directory: Path, startup_timeout: float = 120) -> Iterator[None]:
    """Point this process's Prefect client at the shared server for the block; flush the
    logs and events this process still holds before leaving, as Prefect's harness does."""
    from prefect.context import _temporary_global_settings_context, get_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    with temporary_settings(updates={PREFECT_API_URL: _shared(directory, startup_timeout)}):
        # as Prefect's harness does: threads whose context was copied earlier see it too
        with _temporary_global_settings_context(get_settings_context()):
            yield

        async def drain() -> None:
            try:
                result = APILogWorker.instance().drain()
                if result is not None and hasattr(result, "__await__"):
                    await result
            except RuntimeError:  # no log worker was started
                pass
            result = EventsWorker.drain_all()
            if result is not None and hasattr(result, "__await__"):
                await result

        run_coro_as_sync(drain())


def stop_shared_server(directory: Path) -> None:
    """Stop the run's server, if a worker started one."""
    info = directory / _INFO
    if not info.exists():
        return
    pid = int(json.loads(info.read_text())["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
