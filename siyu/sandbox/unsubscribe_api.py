"""Unsubscribe links: `GET` or `POST /u/<token>` (the link `siyu.unsubscribe.unsubscribe_url`
puts in messages; POST is RFC 8058 one-click) verifies the token's signature
(SIYU_UNSUBSCRIBE_SECRET) and then does what `siyu unsubscribe TOKEN` does: suppresses the
customer on the token's channel (or all) in the database the sandbox was given.

A malformed, unsigned or altered token answers 400 and changes nothing. Every applied (or,
without a database, only verified) unsubscribe is also listed at `GET /_sandbox/unsubscribes`.
When the database cannot be written the answer is 503, so the customer can try again and
nothing is reported done that was not.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime
from html import escape
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from siyu.errors import ConfigError
from siyu.sandbox.gateway import json_response
from siyu.sandbox.state import SandboxState
from siyu.unsubscribe import BadToken, read_token

log = logging.getLogger("siyu.sandbox")


class _Database:
    """Applies unsubscribes to one database; the engine is made on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sessions: Any = None
        self._lock = threading.Lock()

    def apply(self, token: str) -> None:
        from siyu.engine.optouts import apply_unsubscribe
        from siyu.storage.engine import make_engine, make_sessionmaker, write_session

        with self._lock:
            if self._sessions is None:
                self._sessions = make_sessionmaker(make_engine(self.url))
        with write_session(self._sessions) as session:
            apply_unsubscribe(session, token, datetime.now(UTC))


def _page(status: int, title: str, text: str) -> Response:
    html = (
        "<!doctype html><html lang=zh><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>"
        f"<p>{escape(text)}</p></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def routes(state: SandboxState, database_url: str | None) -> list[Route]:
    lock = threading.Lock()
    done: list[dict[str, Any]] = []
    database = _Database(database_url) if database_url else None

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            customer, channel = read_token(token)
        except BadToken:
            return _page(400, "链接无效 Invalid link", "This unsubscribe link is not valid.")
        except ConfigError:
            log.warning("unsubscribe link refused: SIYU_UNSUBSCRIBE_SECRET is not set")
            return _page(503, "暂不可用 Unavailable", "Please try again later.")
        if database is not None:
            try:
                await run_in_threadpool(database.apply, token)
            except Exception as error:  # any database failure: not done, say so
                log.error(
                    "unsubscribe of customer %s not applied: %s", customer, type(error).__name__
                )
                return _page(503, "暂不可用 Unavailable", "Please try again later.")
        with lock:
            done.append(
                {
                    "id": uuid.uuid4().hex,
                    "token": token,
                    "customer_id": customer,
                    "channel": channel,
                    "applied": database is not None,
                    "at": datetime.now(UTC).isoformat(),
                }
            )
        return _page(200, "已退订 Unsubscribed", "You will not receive these messages again.")

    async def listing(_: Request) -> Response:
        with lock:
            rows = list(done)
        return json_response({"unsubscribes": rows, "count": len(rows)})

    return [
        Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/_sandbox/unsubscribes", listing, methods=["GET"]),
    ]
