"""The sandbox gateway as one Starlette app: every emulated provider plus /_sandbox."""

from __future__ import annotations

from starlette.applications import Starlette

from siyu.sandbox import (
    admin_api,
    email_api,
    inbox,
    redirect_api,
    sms_api,
    webhook_api,
    wechat_api,
    wecom_api,
)
from siyu.sandbox.state import SandboxState


def create_app(state: SandboxState | None = None) -> Starlette:
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
        ]
    )
    app.state.sandbox = state
    return app
