"""Run the sandbox gateway with uvicorn: in a background thread (tests, the demo) or in the
foreground (``siyu sandbox``). It only ever binds loopback addresses."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType

import uvicorn

from siyu.sandbox.app import create_app
from siyu.sandbox.state import SandboxState


def check_loopback(host: str) -> None:
    if host == "localhost":
        return
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the sandbox only binds loopback addresses, not {host!r}")


class RunningSandbox:
    """A sandbox serving on ``url`` from a daemon thread. ``stop()`` (or leaving the ``with``
    block) shuts it down; ``state`` gives in-process access to what it recorded."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, url: str, state: SandboxState
    ) -> None:
        self._server = server
        self._thread = thread
        self.url = url
        self.state = state

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningSandbox({self.url!r})"


def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    database_url: str | None = None,
    state: SandboxState | None = None,
) -> RunningSandbox:
    """Start the sandbox in a background thread; ``port=0`` picks a free port.
    ``database_url``: where unsubscribe links (``/u/<token>``) are applied. ``state``: what it
    starts with (e.g. loaded from a saved state file); default: nothing."""
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it Nagle + delayed ACK add ~40 ms to every call.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    real_port = sock.getsockname()[1]
    state = state or SandboxState()
    config = uvicorn.Config(
        create_app(state, database_url=database_url),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"siyu-sandbox:{real_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("sandbox failed to start")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    return RunningSandbox(server, thread, f"http://{shown}:{real_port}", state)
