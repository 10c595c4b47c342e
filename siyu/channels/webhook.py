"""Generic signed webhook (``webhook``): POST one JSON event per message to the partner.

Headers follow Standard Webhooks (webhook-id = the idempotency key, stable across retries;
webhook-timestamp per attempt; webhook-signature HMAC-SHA256) plus an IETF ``Idempotency-Key``.
The body is deterministic for a key (no per-attempt fields), so a replay has the same fingerprint.
"""

from __future__ import annotations

import json
import time
from typing import Any

from siyu.channels import webhook_signature
from siyu.channels.adapter import BatchChannel, Runtime, Unit
from siyu.channels.base import OutboundMessage, Receipt
from siyu.channels.config import WebhookConfig
from siyu.channels.errors import classify_webhook, parse_retry_after
from siyu.channels.secrets import Secret


def event_body(m: OutboundMessage, event_type: str) -> bytes:
    event: dict[str, Any] = {
        "type": event_type,
        "data": {
            "idempotency_key": m.idempotency_key,
            "customer_id": m.customer_id,
            "address": m.address,
            "body": m.body,
            "params": m.params,
        },
    }
    return json.dumps(event, ensure_ascii=False, sort_keys=True, default=str).encode()


class WebhookChannel(BatchChannel):
    identity_kind = "customer_id"
    max_batch = 500
    idempotent = True  # webhook-id / Idempotency-Key

    def __init__(self, name: str, runtime: Runtime, config: WebhookConfig, secret: Secret) -> None:
        super().__init__(name, runtime)
        self.config = config
        self._secret = secret

    def deliver(self, unit: Unit) -> list[Receipt]:
        (m,) = unit
        body = event_body(m, self.config.event_type)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": m.idempotency_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature.sign(
                self._secret.reveal(), m.idempotency_key, timestamp, body
            ),
            "idempotency-key": json.dumps(m.idempotency_key),  # an RFC 8941 sf-string
        }
        resp = self.rt.http.request("POST", self.config.path, content=body, headers=headers)
        if 200 <= resp.status_code < 300:
            return [
                Receipt(
                    m.idempotency_key, "sent", provider_message_id=resp.headers.get("x-message-id")
                )
            ]
        raise classify_webhook(
            resp.status_code, resp.text[:200], parse_retry_after(resp.headers.get("retry-after"))
        )
