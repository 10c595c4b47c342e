"""Only the studio's own page may change a file, and only pages asked for by this studio's
address are served.

    Host    every request: the address the connection was made to (`127.0.0.1:8780`, and
            `localhost:8780` when that is loopback). Another name resolving to 127.0.0.1 (DNS
            rebinding) sends its own name, and gets nothing: neither a page nor a write.
    Origin  every POST, when the browser sends one: the page's own origin.
    token   every POST: the `X-Siyu-Token` header equals this process's random secret, which
            only the studio's own pages carry (compared in constant time).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "X-Siyu-Token"


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def served_hosts(scope: Scope) -> set[str]:
    """The Host headers that name the address this connection was made to."""
    server = scope.get("server")
    if not server or server[1] is None:
        return set()
    address, port = str(server[0]), int(server[1])
    shown = f"[{address}]" if ":" in address else address
    hosts = {f"{shown}:{port}"}
    if _loopback(address):
        hosts |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    return hosts


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return bytes(value).decode("latin-1").lower()
    return ""


class HostGuard:
    """ASGI middleware: a request whose Host is not the served address gets 421, nothing
    else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _host(scope) not in served_hosts(scope):
            response = PlainTextResponse("not this studio's address", status_code=421)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class WriteGuard:
    """The per-process secret the studio's pages carry, and the checks of a write."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)

    def refusal(self, request: Request) -> str | None:
        """Why this POST may not change anything, or None."""
        host = _host(request.scope)
        if host not in served_hosts(request.scope):
            return "the Host header is not this studio's address"
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() != f"{request.url.scheme}://{host}":
            return "the request comes from another site (Origin)"
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8"), self.token.encode("utf-8")):
            return "the page's token is missing or wrong: reload the page"
        return None
