"""The wrapper every emulated provider endpoint runs through: call log, latency and faults.

Each provider module renders its own error shape (``ErrorRenderer``); this module decides
*whether* and *when* (before or after the request is applied) a fault happens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from siyu.sandbox.faults import FaultRule
from siyu.sandbox.state import SandboxState
from siyu.settings import settings

ErrorRenderer = Callable[[FaultRule], Response]
Handler = Callable[[Request], Awaitable[Response]]
# How a provider answers a request it cannot read (wrong types, bad JSON, bad encoding).
InvalidRenderer = Callable[[str], Response]

log = logging.getLogger("siyu.sandbox")

# SIYU_SANDBOX_MAX_BODY_BYTES, default 1 MiB: a 10,000-id add_msg_template is ~400 kB


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def weixin_error(errcode: int, errmsg: str) -> Response:
    """WeCom/WeChat style: HTTP 200 and an errcode body."""
    return json_response({"errcode": errcode, "errmsg": f"{errmsg}, hint: [sandbox]"})


async def read_json(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object; None when it is not one (bad JSON, not UTF-8, too deep)."""
    try:
        data = json.loads(await request.body() or b"{}")
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def max_body_bytes() -> int:
    """The request size limit: SIYU_SANDBOX_MAX_BODY_BYTES (siyu/settings.py), default 1 MiB;
    a bad value is a ValueError naming it."""
    return settings().sandbox_max_body_bytes


def provider_error(path: str, status: int, message: str) -> Response:
    """An error in the shape of the provider that owns ``path`` (for requests that never
    reach a handler: too large, or a handler bug)."""
    if path.startswith("/cgi-bin/"):
        errcode = 45002 if status == 413 else -1  # content size out of limit / system busy
        body = {"errcode": errcode, "errmsg": f"{message}, hint: [sandbox]"}
        return json_response(body, status)
    if path.startswith("/v3/"):
        return json_response({"errors": [{"field": None, "message": message}]}, status)
    if path == "/":
        code = "InvalidParameter" if status == 413 else "InternalError"
        return json_response({"Code": code, "Message": message, "RequestId": "sandbox"}, status)
    return json_response({"error": message}, status)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (in the owning
    provider's shape) without being read further; smaller bodies are buffered and replayed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = provider_error(
            scope["path"], 413, f"request body larger than {self.limit} bytes"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nothing to answer, nothing to apply
            size += len(message.get("body", b""))
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def provider_call(
    state: SandboxState,
    endpoint: str,
    request: Request,
    handler: Handler,
    render_error: ErrorRenderer,
    render_invalid: InvalidRenderer,
) -> Response:
    faults = state.faults
    rule = faults.decide(endpoint)
    state.record_call(endpoint, rule.kind if rule else None)
    config = faults.config
    if config.latency_ms:
        await asyncio.sleep(config.latency_ms / 1000)
    if rule is not None:
        if rule.kind == "rate_limit":
            return Response(
                "too many requests",
                status_code=429,
                headers={"Retry-After": f"{rule.retry_after:g}"},
            )
        if rule.kind == "http":
            return Response("sandbox injected upstream error", status_code=rule.status or 500)
        if rule.kind == "error":
            return render_error(rule)
        if rule.kind == "timeout":
            await asyncio.sleep(config.hang_seconds)
            return Response("gateway timeout", status_code=504)
    try:
        response = await handler(request)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        # A request whose fields have the wrong shape (a string where an object belongs, a
        # number that is not one): the provider's invalid-parameter answer, never a 500.
        log.info("%s: unreadable request (%s)", endpoint, type(exc).__name__)
        return render_invalid(f"invalid parameter ({type(exc).__name__})")
    if rule is not None and rule.kind == "timeout_after_commit":
        await asyncio.sleep(config.hang_seconds)  # the client has given up by now
    return response
