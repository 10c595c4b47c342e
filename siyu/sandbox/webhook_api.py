"""A webhook receiver that behaves like a careful partner: verifies the Standard Webhooks
signature (401 otherwise), dedupes on Idempotency-Key / webhook-id (a replay gets the stored
answer; the same key with another payload gets 422, one still in flight 409) and answers
410 Gone for customers on the ``refuse.webhook`` list."""

from __future__ import annotations

import hashlib
import json
import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from siyu.channels import webhook_signature
from siyu.channels.secrets import SANDBOX_DEV_SECRETS
from siyu.sandbox.faults import FaultRule
from siyu.sandbox.gateway import json_response, provider_call
from siyu.sandbox.state import SandboxState


def render_error(rule: FaultRule) -> Response:
    return json_response(
        {"error": "sandbox injected error"}, status=int(rule.code or rule.status or 500)
    )


def _key(request: Request) -> str:
    raw = request.headers.get("idempotency-key", "")
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':  # RFC 8941 sf-string
        return raw[1:-1]
    return raw or request.headers.get("webhook-id", "")


def routes(state: SandboxState) -> list[Route]:
    async def handle(request: Request) -> Response:
        body = await request.body()
        if not webhook_signature.verify(SANDBOX_DEV_SECRETS["webhook"], request.headers, body):
            return json_response({"error": "invalid signature"}, status=401)
        key = _key(request)
        if not key:
            return json_response({"error": "Idempotency-Key required"}, status=400)
        fingerprint = hashlib.sha256(body).hexdigest()
        scope = ("webhook", key)
        try:
            event = json.loads(body)
            data = event["data"]
        except (ValueError, KeyError, TypeError):
            return json_response({"error": "body must be a JSON event with data"}, status=400)
        customer = str(data.get("customer_id", ""))
        with state.lock:
            seen = state.idempotency.get(scope)
            if seen is not None:
                if seen["fingerprint"] != fingerprint:
                    return json_response(
                        {"error": "Idempotency-Key reused with another payload"}, status=422
                    )
                state.note_dedup("webhook", key)
                return json_response(seen["response"], headers={"X-Message-Id": seen["id"]})
            if scope in state.in_flight:
                return json_response({"error": "request with this key in flight"}, status=409)
            if state.faults.refuses("webhook", customer):
                return json_response({"error": "customer gone"}, status=410)
            message_id = secrets.token_hex(8)
            state.record(
                "webhook",
                "receive",
                customer,
                str(data.get("body", "")),
                key=key,
                provider_id=message_id,
                path=request.url.path,
            )
            response = {"ok": True, "id": message_id}
            state.idempotency[scope] = {
                "fingerprint": fingerprint,
                "response": response,
                "id": message_id,
            }
        return json_response(response, headers={"X-Message-Id": message_id})

    async def view(request: Request) -> Response:
        return await provider_call(
            state,
            "webhook.receive",
            request,
            handle,
            render_error,
            lambda m: json_response({"error": m}, status=400),
        )

    return [Route("/hooks/{name:path}", view, methods=["POST"])]
