"""A real Prefect server, work pool and process worker, started the way the README starts
them (as subprocesses, each with its own throwaway PREFECT_HOME and a free port), for the
tests that prove the production path: deployments from prefect.yaml, runs created by the
server's scheduler, the worker running them, the UI showing them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any PREFECT_ or SIYU_ setting (a test harness or
    the developer's shell may have set some), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SIYU_"))}
    env.update(extra)
    return env


@dataclass
class PrefectServer:
    url: str  # the API, http://127.0.0.1:PORT/api
    ui: str  # the UI, http://127.0.0.1:PORT
    home: Path
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a client (CLI, worker) of this server."""
        return clean_environment(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.url, **extra)

    def prefect(self, cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run the `prefect` CLI against this server, as a user would; its output."""
        done = subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=cwd,
            env=dict(env or self.env()),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; retried, as Prefect's own client does, while the server answers 503
        (its SQLite database is busy: Prefect maps a database timeout to 503) or 502/504, or
        does not answer in time (a loaded CI machine: once, a read timed out after 30 s)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                response = httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)
            except httpx.TimeoutException:
                if time.monotonic() > deadline:
                    raise
                continue
            if response.status_code not in (502, 503, 504) or time.monotonic() > deadline:
                break
            time.sleep(1)
        response.raise_for_status()
        return response.json() if response.content else None


@contextmanager
def running_server(
    home: Path, scheduler_seconds: float = 2, while_starting: Callable[[], None] | None = None
) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port, with its own database under `home`;
    the scheduler looks for due schedules every `scheduler_seconds` (60 s by default).
    `while_starting` runs while the server boots (it takes 10-20 s): work that needs no server."""
    port = free_port()
    process = start_server(home, port, scheduler_seconds)
    try:
        if while_starting is not None:
            while_starting()
        yield wait_healthy(home, port)
    finally:
        stop(process)


def start_server(home: Path, port: int, scheduler_seconds: float = 2) -> subprocess.Popen[bytes]:
    """The server's process (the caller stops it, or kills it and starts it again on the same
    port and database, as after a crash); its log is appended to `home`/server.log."""
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/api"
    env = clean_environment(
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=str(scheduler_seconds),
        PREFECT_UI_API_URL=url,  # the UI's pages call this API (default: port 4200)
    )
    with (home / "server.log").open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_healthy(home: Path, port: int) -> PrefectServer:
    url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    wait_until(lambda: _healthy(url), 180, f"the Prefect server to answer at {url}", log)
    return PrefectServer(url, url.removesuffix("/api"), home, log)


@contextmanager
def running_worker(
    server: PrefectServer, pool: str, cwd: Path, env: Mapping[str, str]
) -> Iterator[Path]:
    """`prefect worker start --pool POOL`, polling every second; yields its log file."""
    process, log = start_worker(server, pool, cwd, env)
    try:
        yield log
    finally:
        stop(process)


def start_worker(
    server: PrefectServer, pool: str, cwd: Path, env: Mapping[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker the caller stops (or kills); its process and its log file."""
    log = server.home / f"worker-{pool}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool],
            cwd=cwd,
            env={
                **env,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            },
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(check: Any, seconds: float, what: str, log: Path | None = None) -> Any:
    """Poll `check()` until it returns something truthy; fail naming `what` (and the tail
    of `log`) after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"waited {seconds:g} s for {what}\n{tail}")
        time.sleep(1)
