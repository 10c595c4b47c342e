"""Bounded retries: exponential backoff with jitter that honours a provider's Retry-After.

Kept deliberately tiny (no tenacity): one policy object and one loop. The loop only retries what
the fault says is transient, and for requests that may already have been applied it first asks
the caller to *reconcile* (look the message up at the provider) so a retry never sends twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from siyu.channels.errors import Action, ProviderFault

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # total tries, the first included
    base_delay: float = 0.5  # seconds before the 2nd try
    max_delay: float = 8.0
    jitter: float = 0.5  # up to this fraction of each delay is randomised away
    max_retry_after: float = 30.0  # longest provider-requested wait we sleep through inline

    def delay(
        self, retry_number: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        raw = min(self.max_delay, self.base_delay * (2 ** (retry_number - 1)))
        wait = raw * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            wait = max(wait, float(retry_after))  # never earlier than the provider asked
        return float(wait)


def retrying(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    reconcile: Callable[[], T | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or a fault says stop; re-raise the last fault.

    ``reconcile`` is called after an *ambiguous* fault (timeout after sending, 5xx) before any
    retry: if it finds the earlier request was applied it returns that result, which is used as
    the success; ``None`` means "not applied, safe to send again". Without a reconcile hook an
    ambiguous fault is retried only when the caller's API is idempotent (the caller decides by
    passing ``reconcile=None`` only for idempotent requests).
    """
    rng = rng or random.Random()
    for n in range(1, policy.attempts + 1):
        try:
            return attempt()
        except ProviderFault as fault:
            last = n == policy.attempts
            if fault.action is Action.RATE:
                if last or fault.retry_after is None or fault.retry_after > policy.max_retry_after:
                    raise
            elif fault.action is not Action.RETRY or last:
                raise
            sleep(policy.delay(n, rng, fault.retry_after))
            if fault.ambiguous and reconcile is not None:
                found = reconcile()
                if found is not None:
                    return found
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
