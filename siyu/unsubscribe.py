"""Signed unsubscribe links: a token names a customer and a channel (or `*` for all) and is
signed with HMAC-SHA256, so a link cannot be forged or altered to unsubscribe someone else.

The signing key comes from SIYU_UNSUBSCRIBE_SECRET; it is never stored in the repository.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from siyu.errors import ConfigError, SiyuError
from siyu.settings import settings


class BadToken(SiyuError):
    pass


def _secret() -> bytes:
    given = settings().unsubscribe_secret
    secret = given.get_secret_value() if given else ""
    if len(secret) < 16:
        raise ConfigError(
            "SIYU_UNSUBSCRIBE_SECRET must be set (16+ characters) to sign unsubscribe links"
        )
    return secret.encode()


def _sign(payload: str) -> str:
    digest = hmac.new(_secret(), payload.encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_token(customer_id: int, channel: str = "*") -> str:
    payload = f"{customer_id}.{channel}"
    return f"{payload}.{_sign(payload)}"


def read_token(token: str) -> tuple[int, str]:
    """(customer id, channel) of a valid token; BadToken otherwise."""
    customer, _, rest = token.partition(".")
    channel, _, signature = rest.rpartition(".")
    if not (customer.isdigit() and channel and signature):
        raise BadToken("malformed unsubscribe token")
    if not hmac.compare_digest(_sign(f"{customer}.{channel}"), signature):
        raise BadToken("unsubscribe token signature does not match")
    return int(customer), channel


def unsubscribe_url(customer_id: int, channel: str = "*") -> str:
    base = settings().link_base_url.rstrip("/")
    return f"{base}/u/{make_token(customer_id, channel)}"
