"""Rate limits shared by every process on one database: the ``rate_buckets`` table.

A channel's `rate_limit` in channels.yaml is the provider's limit for the account. Kept in
each process (siyu/channels/ratelimit.py), N partitions, worker processes or deployments sent
N times that limit. Here a call books its token in the channel's row: the row is locked
(PostgreSQL: the row's lock, after INSERT ... ON CONFLICT DO NOTHING made sure it exists;
SQLite: the database's write lock, siyu.storage.engine.write_session), refilled for the time
since it was last counted, and debited by one; a negative balance is the queue, and the
caller sleeps its place in it outside the transaction. One short transaction per provider call
(providers' limits are tens of calls per second; a call carries up to 100 SMS).

A database error falls back to this process's own bucket, with one warning per outage: a
database outage never stops sending, and each process then keeps at least its own limit.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.ratelimit import Limiter, LimiterFactory, TokenBucket
from siyu.storage.engine import write_session, writing_to_sqlite
from siyu.storage.locked_rows import locked_row
from siyu.storage.models import RateBucket

log = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 10_000  # PostgreSQL: waiting longer than this falls back to the own bucket


class DatabaseRateBucket:
    """TokenBucket's contract (``acquire`` blocks until a call may go) for one channel, with
    the bucket in the database, shared by everyone who books under the same key."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        key: str,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.key, self.rate, self.burst = key, rate, max(1, burst)
        self._sessions = sessions
        self._clock = clock
        self._sleep = sleep
        self._own = TokenBucket(rate, burst, sleep=sleep)  # while the database fails
        self._failing = False
        self._failing_lock = threading.Lock()

    def acquire(self) -> None:
        if writing_to_sqlite():  # booking would wait on this thread's own write lock
            self._own.acquire()
            return
        try:
            wait = self._book()
        except SQLAlchemyError as error:
            self._failed(error)
            self._own.acquire()
            return
        self._working()
        if wait > 0:
            self._sleep(wait)

    def _book(self) -> float:
        """Take one token; the seconds to wait for it (0: now)."""
        with write_session(self._sessions) as session:
            row = locked_row(
                session,
                RateBucket,
                self.key,
                LOCK_TIMEOUT_MS,
                tokens=float(self.burst),
                counted_at=self._clock(),
            )
            now = self._clock()
            elapsed = max(0.0, now - row.counted_at)  # a clock behind the last booker adds none
            tokens = min(float(self.burst), row.tokens + elapsed * self.rate) - 1.0
            row.tokens = tokens
            row.counted_at = max(now, row.counted_at)
        return -tokens / self.rate if tokens < 0 else 0.0

    def _failed(self, error: SQLAlchemyError) -> None:
        original = getattr(error, "orig", None) or error
        reason = f"{type(original).__name__}: {(str(original).splitlines() or [''])[0][:200]}"
        with self._failing_lock:
            first, self._failing = not self._failing, True
        if first:
            log.warning(
                "rate limits: the shared bucket of %s (rate_buckets) failed (%s); this process "
                "keeps the limit on its own until it works again",
                self.key,
                reason,
            )

    def _working(self) -> None:
        with self._failing_lock:
            recovered, self._failing = self._failing, False
        if recovered:
            log.info("rate limits: the shared bucket of %s works again", self.key)


def bucket_key(channel: str, base_url: str) -> str:
    """The channel's name and a digest of its base URL: the same channel pointed at another
    provider (or sandbox) is another bucket."""
    return f"{channel}:{hashlib.sha256(base_url.encode()).hexdigest()[:32]}"


def shared_rate_limits(sessions: sessionmaker[Session]) -> LimiterFactory:
    """Limiters shared through this database with every other process using it."""

    def limiter(channel: str, base_url: str, rate: float, burst: int) -> Limiter:
        return DatabaseRateBucket(sessions, bucket_key(channel, base_url), rate, burst)

    return limiter
