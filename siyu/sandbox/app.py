"""The sandbox gateway as one Starlette app: every emulated provider plus /_sandbox."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from siyu.sandbox import (
    admin_api,
    email_api,
    inbox,
    redirect_api,
    sms_api,
    unsubscribe_api,
    webhook_api,
    wechat_api,
    wecom_api,
)
from siyu.sandbox.gateway import BodyLimit, max_body_bytes, provider_error
from siyu.sandbox.state import SandboxState

log = logging.getLogger("siyu.sandbox")


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Last resort: the owning provider's system-error shape, one log line, no traceback in
    the answer."""
    log.error("%s %s: %s", request.method, request.url.path, type(exc).__name__)
    return provider_error(request.url.path, 500, "system error")


def create_app(
    state: SandboxState | None = None,
    *,
    database_url: str | None = None,
    max_body: int | None = None,
) -> Starlette:
    """``database_url``: where ``/u/<token>`` applies unsubscribes (None: they are verified and
    logged at ``/_sandbox/unsubscribes`` only). ``max_body``: the request size limit in bytes
    (default SIYU_SANDBOX_MAX_BODY_BYTES, else 1 MiB)."""
    state = state or SandboxState()
    app = Starlette(
        routes=[
            *admin_api.routes(state),
            *inbox.routes(state),
            *wecom_api.routes(state),
            *wechat_api.routes(state),
            *email_api.routes(state),
            *webhook_api.routes(state),
            *sms_api.routes(state),
            *redirect_api.routes(state),  # tracked links
            *unsubscribe_api.routes(state, database_url),
        ],
        middleware=[Middleware(BodyLimit, limit=max_body or max_body_bytes())],
        exception_handlers={Exception: _unexpected},
    )
    app.state.sandbox = state
    return app
