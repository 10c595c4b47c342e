"""Engine and session factory. The caller owns the session; nothing here opens one implicitly."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATABASE_URL = "sqlite:///var/siyu.db"


def database_url() -> str:
    """The database URL: `SIYU_DATABASE_URL`, else a SQLite file under ./var/."""
    return os.environ.get("SIYU_DATABASE_URL", DEFAULT_DATABASE_URL)


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the inspection commands read while a tick writes; the busy timeout makes a
    # second writer wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_writer_locks: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_writer_locks_guard = threading.Lock()


def _writer_lock(engine: Engine) -> threading.RLock:
    with _writer_locks_guard:
        lock = _writer_locks.get(engine)
        if lock is None:
            lock = _writer_locks[engine] = threading.RLock()
        return lock


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a transaction that will write: on SQLite it takes the write lock first
    (BEGIN IMMEDIATE), so two workers serialise instead of one failing with "database is
    locked" when it upgrades a read snapshot that the other has since changed. PostgreSQL
    needs nothing here; its claims use row locks (tasks/claims.py)."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        with sessions() as session, session.begin():
            yield session
        return
    # SQLite has one writer at a time. Threads of this process (a step's partitions) queue
    # on a lock and are woken the moment it is free; SQLite's own busy handler would make
    # them sleep 1, 2, 5, 10 ... ms between tries. Other processes still meet busy_timeout.
    with _writer_lock(bind), sessions() as session, session.begin():
        session.execute(text("BEGIN IMMEDIATE"))
        yield session


@contextmanager
def read_only_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction cannot write: for the journeys' own SQL (audience,
    `where:`, `if: {customer: ...}`), which validation already limits to one expression.
    PostgreSQL: SET TRANSACTION READ ONLY. SQLite: PRAGMA query_only on the connection,
    switched off again before the connection goes back to the pool."""
    with sessions() as session, session.begin():
        sqlite = session.get_bind().dialect.name == "sqlite"
        session.execute(text("PRAGMA query_only = ON" if sqlite else "SET TRANSACTION READ ONLY"))
        try:
            yield session
        finally:
            if sqlite:
                session.execute(text("PRAGMA query_only = OFF"))
