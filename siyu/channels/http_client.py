"""The HTTP seam every adapter uses: an httpx client plus the one place where httpx exceptions
become :mod:`siyu.channels.errors` faults (the ``map_httpcore_exceptions`` idea from httpx).

Also applies the channel's client-side rate limit before every request, and refuses to talk to
anything but the configured base_url (no proxies from the environment, no redirects).
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx

from siyu.channels.errors import (
    Action,
    AmbiguousFault,
    ApiFault,
    NotSentFault,
    TransportFault,
    parse_retry_after,
)
from siyu.channels.ratelimit import Limiter
from siyu.channels.secrets import install_log_redaction, redact

# httpx exception -> (fault class, code). Order matters: subclasses before their bases.
# Anything not listed is ambiguous: we cannot prove the request was not applied.
_NOT_SENT: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"),
    (httpx.ConnectError, "connect_error"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.UnsupportedProtocol, "unsupported_protocol"),
)
_AMBIGUOUS: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
    (httpx.RemoteProtocolError, "remote_protocol_error"),
    (httpx.ReadError, "read_error"),
    (httpx.WriteError, "write_error"),
    (httpx.TransportError, "transport_error"),
)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context costs ~50 ms; every channel's client can share one.
    return ssl.create_default_context()


def map_httpx_exception(exc: Exception) -> TransportFault:
    """Translate an httpx exception into a fault; the message is scrubbed of secrets."""
    detail = redact(str(exc) or type(exc).__name__)
    for cls, code in _NOT_SENT:
        if isinstance(exc, cls):
            return NotSentFault(code, detail)
    for cls, code in _AMBIGUOUS:
        if isinstance(exc, cls):
            return AmbiguousFault(code, detail)
    return AmbiguousFault("http_error", detail)


class ProviderHttp:
    """One channel's connection to its provider."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        limiter: Limiter | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        install_log_redaction()
        self.base_url = base_url.rstrip("/")
        self._limiter = limiter
        self.client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            trust_env=False,  # never pick up a proxy from the environment
            follow_redirects=False,
            headers=headers,
            verify=_ssl_context(),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        rate_limited: bool = True,
    ) -> httpx.Response:
        if rate_limited and self._limiter is not None:
            self._limiter.acquire()
        try:
            return self.client.request(
                method, path, params=params, json=json, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise map_httpx_exception(exc) from None  # `from None`: the cause holds the URL

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"ProviderHttp({self.base_url!r})"


def decode_json(resp: httpx.Response) -> dict[str, Any]:
    """A WeCom/WeChat answer as a dict, or a fault: non-JSON or 5xx gateway pages are
    ambiguous."""
    if resp.status_code == 429:
        raise ApiFault(
            Action.RATE,
            "429",
            "too many requests",
            retry_after=parse_retry_after(resp.headers.get("retry-after")) or 1.0,
        )
    if resp.status_code >= 500:
        raise AmbiguousFault(str(resp.status_code), f"HTTP {resp.status_code}")
    try:
        data = resp.json()
    except ValueError:
        raise AmbiguousFault("bad_json", f"HTTP {resp.status_code}, body is not JSON") from None
    if not isinstance(data, dict):
        raise AmbiguousFault("bad_json", "body is not a JSON object")
    if resp.status_code >= 400 and "errcode" not in data:
        raise ApiFault(Action.PERM, str(resp.status_code), f"HTTP {resp.status_code}")
    return data
