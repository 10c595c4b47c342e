"""Tracked-link redirects: `GET /r/<token>` logs the click and answers 302 to the link's
target; `GET /_sandbox/clicks` lists the log for `siyu clicks sync`.

The sandbox has no database and no signing key: it redirects only to http(s) targets and
leaves verifying the signature to the sync, which drops forged clicks.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from siyu.metrics.links import peek_target
from siyu.sandbox.gateway import json_response
from siyu.sandbox.state import SandboxState


def routes(state: SandboxState) -> list[Route]:
    lock = threading.Lock()
    clicks: list[dict[str, str]] = []

    async def redirect(request: Request) -> Response:
        token = request.path_params["token"]
        target = peek_target(token)
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
