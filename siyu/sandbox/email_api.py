"""Emulated SendGrid v3 ``POST /v3/mail/send``: bearer auth, 202 + X-Message-Id, rate-limit
headers, recipient validation. Addresses on the ``refuse.email`` list stand for SendGrid's
suppression list (unsubscribed / bounced) and are rejected by personalization index."""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siyu.channels.secrets import SANDBOX_DEV_SECRETS
from siyu.sandbox.faults import FaultRule
from siyu.sandbox.gateway import json_response, provider_call, read_json
from siyu.sandbox.state import SandboxState

MAX_PERSONALIZATIONS = 1000


def _rate_headers() -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "599",
        "X-RateLimit-Reset": str(int(time.time()) + 60),
    }


def errors(status: int, *items: tuple[str | None, str]) -> Response:
    return json_response(
        {"errors": [{"field": f, "message": m} for f, m in items]},
        status=status,
        headers=_rate_headers(),
    )


def render_error(rule: FaultRule) -> Response:
    status = int(rule.code or rule.status or 500)
    return errors(status, (None, "sandbox injected error"))


def routes(state: SandboxState) -> list[Route]:
    async def handle(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {SANDBOX_DEV_SECRETS['sendgrid']}":
            return errors(
                401, (None, "The provided authorization grant is invalid, expired, or revoked")
            )
        body = await read_json(request)
        if body is None:
            return errors(400, (None, "Bad Request: body is not JSON"))
        pers: list[dict[str, Any]] = body.get("personalizations") or []
        if not pers or len(pers) > MAX_PERSONALIZATIONS:
            return errors(400, ("personalizations", "must hold 1..1000 items"))
        if not (body.get("from") or {}).get("email"):
            return errors(400, ("from.email", "The from email does not contain a valid address."))
        addresses = [str(t.get("email", "")).lower() for p in pers for t in p.get("to") or []]
        if len(addresses) != len(set(addresses)):
            return errors(
                400,
                (
                    "personalizations",
                    "Each email address in the personalization block should be unique",
                ),
            )
        with state.lock:
            bad = []
            for i, p in enumerate(pers):
                for t in p.get("to") or []:
                    email = str(t.get("email", ""))
                    if "@" not in email or state.faults.invalid("email", email):
                        bad.append(
                            (
                                f"personalizations.{i}.to.0.email",
                                "Does not contain a valid address.",
                            )
                        )
                    elif state.faults.refuses("email", email):
                        bad.append(
                            (
                                f"personalizations.{i}.to.0.email",
                                "recipient is on the suppression list (unsubscribed)",
                            )
                        )
            if bad:
                return errors(400, *bad)
            message_id = secrets.token_urlsafe(16)
            subject = str(body.get("subject") or "")
            text = " ".join(str(c.get("value", "")) for c in body.get("content") or [])
            for p in pers:
                key = str((p.get("custom_args") or {}).get("idempotency_key") or message_id)
                for t in p.get("to") or []:
                    state.record(
                        "email",
                        "mail_send",
                        str(t["email"]),
                        f"{subject}\n{text}",
                        key=key,
                        provider_id=message_id,
                        subject=subject,
                    )
        return Response(status_code=202, headers={"X-Message-Id": message_id, **_rate_headers()})

    async def view(request: Request) -> Response:
        return await provider_call(
            state, "email.send", request, handle, render_error, lambda m: errors(400, (None, m))
        )

    return [Route("/v3/mail/send", view, methods=["POST"])]
