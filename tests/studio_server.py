"""`siyu studio` started as a person starts it, on a free port, for the tests that ask it
over HTTP or look at it in a browser; and a project whose first-purchase journey ran for four
buyers, for it to show."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.project import Project
from tests.conftest import Shop, local
from tests.production.prefect_server import free_port
from tests.recording_channel import recording_channels

BUYERS = [f"顾客{n}" for n in range(4)]


def run_first_purchase(project: Path, sessions: sessionmaker[Session], shop: Shop) -> None:
    """Four buyers enrolled in first-purchase-care and three days of its ticks."""
    spec = Project.find(project).journey("first-purchase-care")
    buyers = [shop.customer(name) for name in BUYERS]
    for buyer in buyers:
        shop.order(buyer, local(0, 13), seq=1)  # after the first tick switched it on
    ctx = EngineContext(sessions, project / "templates", dict(recording_channels()))  # type: ignore[arg-type]
    for day in (0, 1, 2):
        run_tick(ctx, spec, local(day, 12))


@contextmanager
def running_studio(
    project: Path, database_url: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The studio of `project` over `database_url` (more options in `args`, variables in
    `env`): its base URL on 127.0.0.1 once it answers, and its process (output piped)."""
    port = free_port()
    siyu = Path(sys.executable).with_name("siyu")
    process = subprocess.Popen(
        [str(siyu), "studio", "--port", str(port), *args],
        env={
            **os.environ,
            "SIYU_PROJECT_DIR": str(project),
            "SIYU_DATABASE_URL": database_url,
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the studio did not start"
                time.sleep(0.2)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def studio_after_first_purchase(
    project: Path, sessions: sessionmaker[Session], shop: Shop
) -> Iterator[str]:
    """The studio over a database where the first-purchase journey ran."""
    run_first_purchase(project, sessions, shop)
    with running_studio(project, str(sessions.kw["bind"].url)) as (base, _):
        yield base
