"""Who may use the studio, checked before any page (Starlette middleware).

Bound to loopback (the default), the studio is this machine's: no token, but only requests
addressed to it by name (Host `127.0.0.1:PORT` or `localhost:PORT`) are served, so a web page
elsewhere cannot reach it through a DNS name rebound to 127.0.0.1. Bound to any other address,
every request carries the token: `?token=` once (it becomes an HttpOnly, SameSite=Strict
cookie, and the address bar loses it), then the cookie. A write (POST) is also refused when
its Origin is another site's.

    refused with        when
    403 unknown host    loopback, and the Host header names anything else
    401 token           bound elsewhere, and no token or a wrong one
    403 other origin    a POST whose Origin is not the page's own
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Access:
    """`token` None: bound to loopback (the Host header is checked instead)."""

    port: int
    token: str | None = None

    @property
    def cookie(self) -> str:
        return f"siyu_studio_{self.port}"  # one per port: two studios keep their own

    def hosts(self) -> set[str]:
        return {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    def knows(self, given: str | None) -> bool:
        if self.token is None or not given:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())


class AccessMiddleware:
    def __init__(self, app: ASGIApp, access: Access, headers: dict[str, str]) -> None:
        self.app = app
        self.access = access
        self.headers = headers  # the pages' own (a strict CSP) on the refusals too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(Request(scope))
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        access = self.access
        host = request.headers.get("host", "")
        if access.token is None and host not in access.hosts():
            known = ", ".join(sorted(access.hosts()))
            return self._page(403, "unknown host", f"this studio answers only to {known}")
        if access.token is not None and not access.knows(request.cookies.get(access.cookie)):
            if not access.knows(request.query_params.get("token")):
                return self._page(401, "token required", "open the address siyu studio printed")
            if request.method == "GET":  # once: the cookie from now on, the URL without it
                return self._welcome(request)
        origin = request.headers.get("origin")
        if request.method not in SAFE_METHODS and origin is not None:
            if origin != f"{request.url.scheme}://{host}":
                return self._page(403, "other origin", "a write from another site is refused")
        return None

    def _welcome(self, request: Request) -> Response:
        url = request.url.remove_query_params("token")
        response = RedirectResponse(
            url.path + (f"?{url.query}" if url.query else ""), 303, headers=self.headers
        )
        response.set_cookie(
            self.access.cookie, str(self.access.token), httponly=True, samesite="strict"
        )
        return response

    def _page(self, status: int, title: str, why: str) -> Response:
        body = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
            f"<body><h1>{status} {title}</h1><p>{escape(why)}</p></body></html>\n"
        )
        return HTMLResponse(body, status_code=status, headers=self.headers)
