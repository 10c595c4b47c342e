"""Foreground entry point, wired by the CLI as ``siyu sandbox --port 8765``."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from siyu.errors import ConfigError
from siyu.sandbox.app import create_app
from siyu.sandbox.server import check_loopback
from siyu.sandbox.state import SandboxState

# Where `siyu demo` saves what its sandbox received (siyu/demo.py).
DEFAULT_STATE_FILE = Path("var/sandbox-state.json")


def load_state(state_file: Path | None) -> tuple[SandboxState, int]:
    """A sandbox state holding `state_file`'s messages, WeCom tasks and join ways; a fresh
    one without a file. Also the number of messages loaded."""
    state = SandboxState()
    if state_file is None:
        return state, 0
    if not state_file.exists():
        raise ConfigError(f"no sandbox state at {state_file} (`siyu demo` writes one)")
    try:
        state.load(state_file)
    except (OSError, ValueError) as error:
        raise ConfigError(str(error)) from None
    return state, len(state.messages)


def run(host: str = "127.0.0.1", port: int = 8765, state_file: Path | None = None) -> None:
    """Serve the sandbox gateway until interrupted (Ctrl-C). Unsubscribe links are applied
    to the project's database (SIYU_DATABASE_URL), as `siyu unsubscribe TOKEN` would.
    `state_file` (written by `siyu demo`), when given, is loaded, so the inbox shows it."""
    from siyu.storage.engine import database_url

    check_loopback(host)
    state, loaded = load_state(state_file)
    if loaded:
        print(f"loaded {loaded} messages from {state_file}")
    shown = f"[{host}]" if ":" in host else host
    print(f"inbox: http://{shown}:{port}/_sandbox/inbox")
    uvicorn.run(
        create_app(state, database_url=database_url()),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
