"""Access-token cache with single-flight refresh (WeCom ``gettoken``, WeChat ``stable_token``).

One cache per (provider, base_url, app id, secret): WeCom tokens are only valid for the app whose
secret fetched them. Refetching too often gets the caller frequency-blocked, so when many threads
see the same expired token at once exactly one refetches; the rest reuse its result.

Given a ``TokenStore`` (siyu/channels/token_store.py: a table every process on the database
shares), the single flight is fleet-wide: a process whose own copy expired takes the stored
token when it is still valid, and only one process fetches a new one. When the store fails,
the cache behaves as without it (this process fetches for itself): sending never waits on it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

# fetch() -> (token, expires_in seconds)
Fetch = Callable[[], tuple[str, float]]

EARLY_EXPIRY = 60.0  # treat tokens as expired a minute early, like wechatpy


def usable_for(expires_in: float) -> float:
    """Seconds a token fetched now is used: a minute less than it lives, at least a second
    (a stable_token can come back with only seconds left)."""
    return max(1.0, expires_in - EARLY_EXPIRY)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredToken:
    """A token as the store holds it: wall-clock UTC times, comparable across processes."""

    token: str
    expires_at: datetime  # as the provider said
    updated_at: datetime  # when it was fetched

    @property
    def usable_until(self) -> datetime:
        lifetime = (self.expires_at - self.updated_at).total_seconds()
        return self.updated_at + timedelta(seconds=usable_for(lifetime))

    def usable(self, now: datetime, stale: str | None = None) -> bool:
        """Still good to use, and not the token the provider just rejected."""
        return bool(self.token) and self.token != stale and now < self.usable_until


class TokenStoreError(Exception):
    """The store could not be read or written (a database error): the cache goes on without
    it. The message never holds a token."""


class TokenStore(Protocol):
    def read(self, key: str) -> StoredToken | None:
        """The stored token, without locking."""
        ...

    def refresh(self, key: str, fetch: Fetch, stale: str | None) -> StoredToken:
        """Under the key's lock: the stored token if ``usable(now, stale)``, else one fetched
        with ``fetch`` and stored. A fault of ``fetch`` propagates unchanged."""
        ...


class TokenCache:
    """Holds one token. The caller passes its own ``fetch`` on each call, so channels sharing a
    cache never depend on each other's (possibly closed) HTTP clients."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        store: TokenStore | None = None,
        key: str = "",
        wall_clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._clock = clock  # this process's expiry: monotonic, immune to clock changes
        self._wall_clock = wall_clock  # the store's expiry: UTC, the same for every process
        self._store = store
        self._key = key
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0  # how many times this process called the provider (tests, metrics)

    def get(self, fetch: Fetch) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._renew(fetch, stale=None)
            assert self._token is not None
            return self._token

    def invalidate(self, stale: str, fetch: Fetch) -> str:
        """The provider rejected ``stale``; return a fresh token. If another thread (or, with a
        store, another process) already replaced it, that newer token is returned without
        another fetch (single flight)."""
        with self._lock:
            if self._token == stale or self._token is None:
                self._renew(fetch, stale=stale)
            assert self._token is not None
            return self._token

    def _renew(self, fetch: Fetch, stale: str | None) -> None:
        self._token = None
        if self._store is None or not self._from_store(self._store, fetch, stale):
            self._keep(*fetch())

    def _from_store(self, store: TokenStore, fetch: Fetch, stale: str | None) -> bool:
        """Take the fleet's token, fetching it under the store's lock when it is not usable.
        False when the store failed before anything was fetched."""
        fetched: list[tuple[str, float]] = []

        def fetch_once() -> tuple[str, float]:
            fetched.append(fetch())
            return fetched[-1]

        try:
            found = store.read(self._key)  # most calls end here, without a lock
            if found is None or not found.usable(self._wall_clock(), stale):
                found = store.refresh(self._key, fetch_once, stale)
        except TokenStoreError:
            if not fetched:
                return False
            self._keep(*fetched[-1])  # fetched, then not stored: use it, do not fetch again
            return True
        self.fetches += len(fetched)
        self._token = found.token
        remaining = (found.usable_until - self._wall_clock()).total_seconds()
        self._expires_at = self._clock() + max(1.0, remaining)
        return True

    def _keep(self, token: str, expires_in: float) -> None:
        """A token this process fetched itself."""
        self.fetches += 1
        self._token = token
        self._expires_at = self._clock() + usable_for(expires_in)

    def __repr__(self) -> str:  # never show the token itself
        return f"TokenCache(cached={self._token is not None}, fetches={self.fetches})"


def store_key(provider: str, base_url: str, app_id: str, secret: str) -> str:
    """The store's key of one app's token: readable provider and app id, the rest hashed."""
    digest = hashlib.sha256("\0".join((provider, base_url, app_id, secret)).encode()).hexdigest()
    return f"{provider}:{app_id[:64]}:{digest}"


class TokenCaches:
    """The process-wide registry of caches, keyed without ever storing the raw secret. With a
    ``store``, every cache shares its tokens through it."""

    def __init__(self, store: TokenStore | None = None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._caches: dict[tuple[str, str, str, str], TokenCache] = {}

    def get(self, provider: str, base_url: str, app_id: str, secret: str) -> TokenCache:
        key = (provider, base_url, app_id, hashlib.sha256(secret.encode()).hexdigest())
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                shared = store_key(provider, base_url, app_id, secret)
                cache = self._caches[key] = TokenCache(store=self.store, key=shared)
            return cache
