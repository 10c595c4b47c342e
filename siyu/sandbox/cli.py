"""Foreground entry point, wired by the CLI as ``siyu sandbox --port 8765``."""

from __future__ import annotations

import uvicorn

from siyu.sandbox.app import create_app
from siyu.sandbox.server import check_loopback


def run(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the sandbox gateway until interrupted (Ctrl-C)."""
    check_loopback(host)
    uvicorn.run(
        create_app(),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
