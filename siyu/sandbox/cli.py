"""Foreground entry point, wired by the CLI as ``siyu sandbox --port 8765``."""

from __future__ import annotations

import uvicorn

from siyu.sandbox.app import create_app
from siyu.sandbox.server import check_loopback


def run(host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the sandbox gateway until interrupted (Ctrl-C). Unsubscribe links are applied
    to the project's database (SIYU_DATABASE_URL), as `siyu unsubscribe TOKEN` would."""
    from db.engine import database_url

    check_loopback(host)
    uvicorn.run(
        create_app(database_url=database_url()),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
