"""E-mail through the SendGrid v3 HTTP API (``email``): ``POST /v3/mail/send``.

Messages with the same subject and body share one request, one personalization per recipient
(≤1000), each carrying ``custom_args.idempotency_key``. The first body line ``Subject: ...``
becomes the subject; otherwise the configured default is used.

SendGrid has no idempotency: a lost answer (timeout, 5xx) may have been accepted, and there is no
lookup API without the paid Email Activity add-on. Such a request is never retried blind: its
messages are answered `unknown` and held for a person to decide (`siyu resolve`), as are the
messages of a call a crash interrupted (BatchChannel.holds_what_it_cannot_check).
A 400 that names one personalization (``personalizations.N...``) fails or refuses only that
recipient; the rest of the request is sent again without it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from siyu.channels.adapter import BatchChannel, Runtime, Unit, group_by
from siyu.channels.base import OutboundMessage, Receipt
from siyu.channels.config import EmailConfig
from siyu.channels.errors import classify_sendgrid, parse_retry_after
from siyu.channels.secrets import Secret

MAX_PERSONALIZATIONS = 1000
_FIELD_INDEX = re.compile(r"^personalizations\.(\d+)\b")
_REFUSAL_WORDS = ("unsubscribe", "bounce", "suppress", "blocked")


def split_subject(body: str, default: str) -> tuple[str, str]:
    first, sep, rest = body.partition("\n")
    if first.lower().startswith("subject:"):
        return first[len("subject:") :].strip() or default, rest.lstrip("\n") if sep else ""
    return default, body


class EmailChannel(BatchChannel):
    identity_kind = "email"
    max_batch = MAX_PERSONALIZATIONS
    idempotent = False  # see module docstring: a lost answer is held as `unknown`, not retried

    def __init__(self, name: str, runtime: Runtime, config: EmailConfig, api_key: Secret) -> None:
        super().__init__(name, runtime)
        self.config = config
        self._api_key = api_key

    def _subject_body(self, m: OutboundMessage) -> tuple[str, str]:
        subject, text = split_subject(m.body, self.config.default_subject)
        return str(m.params.get("subject") or subject), text

    def plan(self, messages: Sequence[OutboundMessage]) -> list[Unit]:
        return group_by(messages, self._subject_body, MAX_PERSONALIZATIONS)

    def request_body(self, unit: Unit) -> dict[str, Any]:
        subject, text = self._subject_body(unit[0])
        sender: dict[str, str] = {"email": self.config.from_email}
        if self.config.from_name:
            sender["name"] = self.config.from_name
        body: dict[str, Any] = {
            "personalizations": [
                {
                    "to": [{"email": m.address}],
                    "custom_args": {
                        "idempotency_key": m.idempotency_key,
                        "customer_id": str(m.customer_id),
                    },
                }
                for m in unit
            ],
            "from": sender,
            "subject": subject,
            "content": [{"type": "text/plain", "value": text}],
        }
        if self.config.reply_to:
            body["reply_to"] = {"email": self.config.reply_to}
        return body

    def deliver(self, unit: Unit) -> list[Receipt]:
        resp = self.rt.http.request(
            "POST",
            "/v3/mail/send",
            json=self.request_body(unit),
            headers={"authorization": f"Bearer {self._api_key.reveal()}"},
        )
        if resp.status_code in (200, 202):
            message_id = resp.headers.get("x-message-id")
            return [
                Receipt(m.idempotency_key, "sent", provider_message_id=message_id) for m in unit
            ]
        errors = _errors(resp)
        if resp.status_code == 400 and len(unit) > 1:
            bad = _per_recipient(unit, errors)
            if bad:  # drop the named recipients and send the others again
                rest = [m for m in unit if m.idempotency_key not in bad]
                return list(bad.values()) + (self.deliver(rest) if rest else [])
        message = "; ".join(str(e.get("message", "")) for e in errors)[:200]
        if resp.status_code == 400 and len(unit) == 1:
            bad = _per_recipient(unit, errors)
            if bad:
                return list(bad.values())
        raise classify_sendgrid(resp.status_code, message, _retry_after(resp))


def _retry_after(resp: Any) -> float | None:
    """Retry-After if present, else SendGrid's X-RateLimit-Reset (a Unix epoch)."""
    seconds = parse_retry_after(resp.headers.get("retry-after"))
    reset = resp.headers.get("x-ratelimit-reset")
    if seconds is None and resp.status_code == 429 and reset and reset.isdigit():
        seconds = max(0.0, int(reset) - time.time())
    return seconds


def _errors(resp: Any) -> list[dict[str, Any]]:
    try:
        data = resp.json()
    except ValueError:
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors or [] if isinstance(e, dict)]


def _per_recipient(unit: Unit, errors: list[dict[str, Any]]) -> dict[str, Receipt]:
    """Receipts for the recipients a 400 names by personalization index."""
    bad: dict[str, Receipt] = {}
    for e in errors:
        m = _FIELD_INDEX.match(str(e.get("field") or ""))
        if not m or int(m.group(1)) >= len(unit):
            continue
        msg = unit[int(m.group(1))]
        text = str(e.get("message", ""))
        refused = any(w in text.lower() for w in _REFUSAL_WORDS)
        bad[msg.idempotency_key] = Receipt(
            msg.idempotency_key, "refused" if refused else "failed", code="400", detail=text[:200]
        )
    return bad
