"""Access tokens shared by every process on one database: the ``provider_tokens`` table.

Each flow run and each partition worker is its own process; with only their own caches each
fetched its own token, and WeCom/WeChat throttle (and alert on) frequent fetches. Here a
process reads the stored token first; when it has expired, or the provider rejected it, the
row is locked (PostgreSQL: the row's lock, taken after INSERT ... ON CONFLICT DO NOTHING made
sure it exists; SQLite: the database's write lock, siyu.storage.engine.write_session),
checked again, and only then fetched and written: one fetch for the fleet.

A database error becomes TokenStoreError, which the cache answers by fetching for itself
(siyu/channels/tokens.py), with one warning per outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.tokens import Fetch, StoredToken, TokenCaches, TokenStoreError, utc_now
from siyu.storage.engine import write_session
from siyu.storage.locked_rows import locked_row
from siyu.storage.models import ProviderToken

log = logging.getLogger(__name__)

# How long a process waits for another one's fetch under the row lock (PostgreSQL; SQLite
# waits its busy_timeout) before it gives up and fetches for itself.
LOCK_TIMEOUT_MS = 30_000
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a row inserted only to be locked: not usable


class DatabaseTokenStore:
    def __init__(
        self, sessions: sessionmaker[Session], *, now: Callable[[], datetime] = utc_now
    ) -> None:
        self._sessions = sessions
        self._now = now
        self._failing = False  # warn once per outage, not once per call
        self._failing_lock = threading.Lock()

    def read(self, key: str) -> StoredToken | None:
        try:
            with self._sessions() as session:
                row = session.get(ProviderToken, key)
                found = _stored(row) if row is not None else None
        except SQLAlchemyError as error:
            raise self._failed(error) from None
        return found

    def refresh(self, key: str, fetch: Fetch, stale: str | None) -> StoredToken:
        try:
            with write_session(self._sessions) as session:
                row = locked_row(
                    session,
                    ProviderToken,
                    key,
                    LOCK_TIMEOUT_MS,
                    token="",
                    expires_at=_NEVER,
                    updated_at=_NEVER,
                    fetches=0,
                )
                found = _stored(row)
                if not found.usable(self._now(), stale):
                    token, expires_in = fetch()  # the only fetch, while the others wait
                    fetched_at = self._now()
                    row.token = token
                    row.expires_at = fetched_at + timedelta(seconds=expires_in)
                    row.updated_at = fetched_at
                    row.fetches += 1
                    found = _stored(row)
        except SQLAlchemyError as error:
            raise self._failed(error) from None
        self._working()  # a write went through: the store works (again)
        return found

    def _failed(self, error: SQLAlchemyError) -> TokenStoreError:
        # The DBAPI's own message: SQLAlchemy's adds the statement's parameters (a token).
        original = getattr(error, "orig", None) or error
        first_line = (str(original).splitlines() or [""])[0][:200]
        reason = f"{type(original).__name__}: {first_line}"
        with self._failing_lock:
            first = not self._failing
            self._failing = True
        if first:
            log.warning(
                "provider tokens: the shared store (provider_tokens) failed (%s); this "
                "process fetches its own tokens until it works again",
                reason,
            )
        return TokenStoreError(reason)

    def _working(self) -> None:
        with self._failing_lock:
            recovered = self._failing
            self._failing = False
        if recovered:
            log.info("provider tokens: the shared store works again")


def _stored(row: ProviderToken) -> StoredToken:
    return StoredToken(row.token, row.expires_at, row.updated_at)


def shared_token_caches(sessions: sessionmaker[Session]) -> TokenCaches:
    """Token caches shared through this database with every other process using it."""
    return TokenCaches(DatabaseTokenStore(sessions))
