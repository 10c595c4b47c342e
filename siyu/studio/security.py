"""Only the studio's own page may change a file.

Every request has passed siyu.studio.access first: on loopback its Host names this studio
(no DNS-rebound name), elsewhere it carries the studio's token, and a POST's Origin, when the
browser sends one, is the page's own. A write also carries, in the `X-Siyu-Token` header, this
process's random secret, which only the studio's own pages hold (compared in constant time):
a form or script on another site cannot read it, so it cannot send it.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

TOKEN_HEADER = "X-Siyu-Token"


class WriteGuard:
    """The per-process secret the studio's pages carry, and the check of a write."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(32)

    def refusal(self, request: Request) -> str | None:
        """Why this POST may not change anything, or None."""
        sent = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8"), self.token.encode("utf-8")):
            return "the page's token is missing or wrong: reload the page"
        return None
