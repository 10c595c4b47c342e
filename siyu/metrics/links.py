"""Tracked links: `{{ "https://shop.example/p/42" | tracked }}` in a template becomes
`<SIYU_LINK_BASE_URL>/r/<token>`, where the token names the journey, step, variant, customer
and target URL and is signed (HMAC-SHA256) so a click cannot be forged for someone else.

The redirect endpoint (the sandbox's `GET /r/<token>`, or the brand's own web server) verifies
the signature (`read_link_token`), records the click and redirects — never on an unverified
token, which would make it an open redirect; `siyu clicks sync` turns recorded clicks into
`link_clicked` events. The key is SIYU_LINK_SECRET (else SIYU_UNSUBSCRIBE_SECRET); without a
key, links are left untracked rather than failing the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context

from siyu.errors import ConfigError, SiyuError
from siyu.settings import settings


class BadLink(SiyuError):
    pass


@dataclass(frozen=True)
class TrackedLink:
    journey: str
    step: str
    customer_id: int
    variant: str | None
    url: str


def _secret() -> bytes:
    given = settings().link_secret or settings().unsubscribe_secret
    secret = given.get_secret_value() if given else ""
    if len(secret) < 16:
        raise ConfigError("SIYU_LINK_SECRET (16+ characters) must be set to sign tracked links")
    return secret.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_link_token(link: TrackedLink) -> str:
    payload = _b64(
        json.dumps(
            [link.journey, link.step, link.customer_id, link.variant, link.url],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    )
    signature = _b64(hmac.new(_secret(), payload.encode(), hashlib.sha256).digest()[:16])
    return f"{payload}.{signature}"


def read_link_token(token: str) -> TrackedLink:
    payload, _, signature = token.partition(".")
    expected = _b64(hmac.new(_secret(), payload.encode(), hashlib.sha256).digest()[:16])
    if not signature or not hmac.compare_digest(expected, signature):
        raise BadLink("tracked link signature does not match")
    try:
        journey, step, customer_id, variant, url = json.loads(_unb64(payload))
    except (ValueError, TypeError) as error:
        raise BadLink(f"malformed tracked link ({error})") from None
    return TrackedLink(str(journey), str(step), int(customer_id), variant, str(url))


def link_base_url() -> str:
    return settings().link_base_url.rstrip("/")


@pass_context
def tracked(context: Context, url: str) -> str:
    """The Jinja filter: the tracked form of `url` for this message's customer and step."""
    customer: Any = context.get("customer") or {}
    customer_id = customer.get("id") if isinstance(customer, dict) else None
    journey, step = context.get("journey"), context.get("step")
    if customer_id is None or not journey or not step:
        return url  # a preview with sample data: nothing to attribute the click to
    try:
        token = make_link_token(
            TrackedLink(str(journey), str(step), int(customer_id), context.get("variant"), url)
        )
    except ConfigError:
        return url
    return f"{link_base_url()}/r/{token}"
