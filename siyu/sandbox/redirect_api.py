"""Tracked-link redirects: `GET /r/<token>` verifies the token's signature (SIYU_LINK_SECRET,
else SIYU_UNSUBSCRIBE_SECRET, as the renderer signs it), logs the click and answers 302 to the
link's http(s) target; `GET /_sandbox/clicks` lists the log for `siyu clicks sync`.

An unsigned, tampered or malformed token, or any token while no key is configured, answers
404 and redirects nowhere: the endpoint is never an open redirect. The sync verifies again.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from siyu.errors import ConfigError
from siyu.metrics.links import BadLink, read_link_token
from siyu.sandbox.gateway import json_response
from siyu.sandbox.state import SandboxState


def routes(state: SandboxState) -> list[Route]:
    lock = threading.Lock()
    clicks: list[dict[str, str]] = []

    async def redirect(request: Request) -> Response:
        token = request.path_params["token"]
        target = _verified_target(token)
        if target is None:
            return json_response({"error": "not a tracked link"}, status=404)
        with lock:
            clicks.append(
                {
                    "id": uuid.uuid4().hex,
                    "token": token,
                    "at": datetime.now(UTC).isoformat(),
                    "user_agent": request.headers.get("user-agent", ""),
                }
            )
        return RedirectResponse(target, status_code=302)

    async def listing(_: Request) -> Response:
        with lock:
            rows = list(clicks)
        return json_response({"clicks": rows, "count": len(rows)})

    return [
        Route("/r/{token}", redirect, methods=["GET"]),
        Route("/_sandbox/clicks", listing, methods=["GET"]),
    ]


def _verified_target(token: str) -> str | None:
    """The target of a correctly signed link to an http(s) URL; None for anything else."""
    try:
        link = read_link_token(token)
    except (BadLink, ConfigError, ValueError, TypeError):
        return None
    if not link.url.startswith(("https://", "http://")):
        return None
    return link.url
