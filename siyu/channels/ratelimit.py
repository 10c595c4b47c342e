"""Client-side token bucket: keeps one channel under its configured calls per second.

This one counts for its own process; siyu/channels/rate_store.py keeps the same bucket in the
database for the whole fleet (the deployed flow's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Limiter(Protocol):
    def acquire(self) -> None:
        """Block until one more call may go."""


# (channel name, base URL, calls per second, burst) -> the channel's limiter
LimiterFactory = Callable[[str, str, float, int], Limiter]


def own_limiter(channel: str, base_url: str, rate: float, burst: int) -> Limiter:
    """A bucket of this process's own (the default when nothing is shared)."""
    return TokenBucket(rate, burst)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``acquire`` blocks until a token
    is free. Thread-safe: the lock is held only to book a slot, never while sleeping."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0  # book the token now; a negative balance is the queue
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
