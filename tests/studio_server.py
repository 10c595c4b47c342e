"""`siyu studio` started as a person starts it, on a free port, for the tests that ask it
over HTTP or look at it in a browser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.production.prefect_server import free_port


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
