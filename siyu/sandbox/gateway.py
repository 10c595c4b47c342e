"""The wrapper every emulated provider endpoint runs through: call log, latency and faults.

Each provider module renders its own error shape (``ErrorRenderer``); this module decides
*whether* and *when* (before or after the request is applied) a fault happens.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from siyu.sandbox.faults import FaultRule
from siyu.sandbox.state import SandboxState

ErrorRenderer = Callable[[FaultRule], Response]
Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


def weixin_error(errcode: int, errmsg: str) -> Response:
    """WeCom/WeChat style: HTTP 200 and an errcode body."""
    return json_response({"errcode": errcode, "errmsg": f"{errmsg}, hint: [sandbox]"})


async def read_json(request: Request) -> dict[str, Any] | None:
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def provider_call(
    state: SandboxState,
    endpoint: str,
    request: Request,
    handler: Handler,
    render_error: ErrorRenderer,
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
    response = await handler(request)
    if rule is not None and rule.kind == "timeout_after_commit":
        await asyncio.sleep(config.hang_seconds)  # the client has given up by now
    return response
