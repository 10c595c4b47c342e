"""Access-token cache with single-flight refresh (WeCom ``gettoken``, WeChat ``stable_token``).

One cache per (provider, base_url, app id, secret): WeCom tokens are only valid for the app whose
secret fetched them. Refetching too often gets the caller frequency-blocked, so when many threads
see the same expired token at once exactly one refetches; the rest reuse its result.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

# fetch() -> (token, expires_in seconds)
Fetch = Callable[[], tuple[str, float]]

EARLY_EXPIRY = 60.0  # treat tokens as expired a minute early, like wechatpy


class TokenCache:
    """Holds one token. The caller passes its own ``fetch`` on each call, so channels sharing a
    cache never depend on each other's (possibly closed) HTTP clients."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0  # how many times we called the provider (tests and metrics)

    def get(self, fetch: Fetch) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._refresh_locked(fetch)
            assert self._token is not None
            return self._token

    def invalidate(self, stale: str, fetch: Fetch) -> str:
        """The provider rejected ``stale``; return a fresh token. If another thread already
        replaced it, that newer token is returned without another fetch (single flight)."""
        with self._lock:
            if self._token == stale or self._token is None:
                self._refresh_locked(fetch)
            assert self._token is not None
            return self._token

    def _refresh_locked(self, fetch: Fetch) -> None:
        self._token = None
        token, expires_in = fetch()
        self.fetches += 1
        self._token = token
        self._expires_at = self._clock() + max(1.0, expires_in - EARLY_EXPIRY)

    def __repr__(self) -> str:  # never show the token itself
        return f"TokenCache(cached={self._token is not None}, fetches={self.fetches})"


class TokenCaches:
    """The process-wide registry of caches, keyed without ever storing the raw secret."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caches: dict[tuple[str, str, str, str], TokenCache] = {}

    def get(self, provider: str, base_url: str, app_id: str, secret: str) -> TokenCache:
        key = (provider, base_url, app_id, hashlib.sha256(secret.encode()).hexdigest())
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                cache = self._caches[key] = TokenCache()
            return cache
