"""Engine and session factory. The caller owns the session; nothing here opens one implicitly."""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.settings import settings


def database_url() -> str:
    """The database URL: `SIYU_DATABASE_URL`, else a SQLite file under ./var/."""
    return settings().database_url


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not url.startswith("sqlite"):
        # A pooled connection a database restart cut is found and replaced at checkout (one
        # round trip per checkout), instead of failing the next statement and costing a retry.
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "before_cursor_execute", _restart_deadline)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the inspection commands read while a tick writes; the busy timeout makes a
    # second writer wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # durability per commit: siyu/settings.py sqlite_synchronous
    cursor.execute(f"PRAGMA synchronous={settings().sqlite_synchronous}")
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
    needs nothing here; its claims use row locks (siyu/engine/claims.py)."""
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
        _writing.depth = getattr(_writing, "depth", 0) + 1
        try:
            yield session
        finally:
            _writing.depth -= 1


_writing = threading.local()  # how many SQLite write sessions this thread has open


def writing_to_sqlite() -> bool:
    """Whether this thread holds an SQLite write transaction (write_session): another
    connection's write would wait for it (busy_timeout), i.e. for itself."""
    return getattr(_writing, "depth", 0) > 0


# The journeys' own SQL (marketer-written `where:`, `audience:`, `if: {customer:}`) runs in
# read_only_session under this many seconds per statement: SIYU_MARKETER_SQL_TIMEOUT.
MARKETER_SQL_TIMEOUT_ENV = "SIYU_MARKETER_SQL_TIMEOUT"

# The SQLite functions a read-only session may call: the engine's own aggregates and the
# harmless scalar functions journeys may use (siyu/language/where_clause.py lists them per
# dialect; tests/hostile/test_marketer_sql.py runs each of them through this list). Anything
# else (randomblob, zeroblob, load_extension, printf, ...) is refused by the authoriser.
SQLITE_READ_ONLY_FUNCTIONS = frozenset(
    {
        # the engine's own read queries
        "count", "min", "max", "sum", "total", "avg", "coalesce", "ifnull", "json_extract",
        # journeys' conditions (where_clause.HARMLESS_FUNCTIONS["sqlite"], as SQLite spells them)
        "lower", "upper", "length", "abs", "round", "trim", "ltrim", "rtrim", "substr",
        "substring", "replace", "instr", "nullif", "date", "datetime", "time", "julianday",
        "strftime", "like", "glob", "current_date", "current_time", "current_timestamp", "->>",
    }
)  # fmt: skip


def marketer_sql_timeout() -> float:
    """Seconds one statement of a journey's own SQL may run: SIYU_MARKETER_SQL_TIMEOUT
    (default 30, at most 86400; siyu/settings.py)."""
    return settings().marketer_sql_timeout


class _Deadline:
    """SQLite's statement timeout: a progress handler that aborts the running statement
    (sqlite3 then raises "interrupted") once it has run longer than `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.restart()

    def restart(self) -> None:
        self.ends = time.monotonic() + self.seconds

    def __call__(self) -> int:
        return int(time.monotonic() > self.ends)


_DEADLINE = "siyu_deadline"
_PROGRESS_STEPS = 1000  # SQLite VM instructions between two looks at the clock


def _restart_deadline(conn: Connection, *_args: Any) -> None:
    # before_cursor_execute: each statement of a read-only session gets the whole timeout
    deadline = conn.info.get(_DEADLINE)
    if deadline is not None:
        deadline.restart()


def _sqlite_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _source: str | None
) -> int:
    """Reads only, and only the listed functions (arg2 names the function)."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_TRANSACTION):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in SQLITE_READ_ONLY_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def read_only_session(
    sessions: sessionmaker[Session], timeout: float | None = None
) -> Iterator[Session]:
    """A session whose transaction cannot write, each statement cut off after `timeout`
    seconds (default: SIYU_MARKETER_SQL_TIMEOUT, 30 s): for the journeys' own SQL (audience,
    `where:`, `if: {customer: ...}`), which validation already limits to one expression over
    known columns and harmless functions. This is the second line, for what validation missed.

    PostgreSQL: SET TRANSACTION READ ONLY and SET LOCAL statement_timeout; the server cancels
    a slow statement itself, even if this process dies. SQLite: PRAGMA query_only, an
    authoriser that allows reads and SQLITE_READ_ONLY_FUNCTIONS only, and a progress handler
    that interrupts a statement after `timeout`; all switched off again before the connection
    goes back to the pool. A reader never takes SQLite's write lock (WAL), so other ticks
    write meanwhile."""
    seconds = marketer_sql_timeout() if timeout is None else timeout
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name != "sqlite":
            session.execute(text("SET TRANSACTION READ ONLY"))
            session.execute(text(f"SET LOCAL statement_timeout = {max(int(seconds * 1000), 1)}"))
            yield session
            return
        connection = session.connection()
        raw: Any = connection.connection.dbapi_connection
        connection.exec_driver_sql("PRAGMA query_only = ON")
        deadline = _Deadline(seconds)
        connection.info[_DEADLINE] = deadline
        raw.set_progress_handler(deadline, _PROGRESS_STEPS)
        raw.set_authorizer(_sqlite_authorizer)
        try:
            yield session
        finally:
            raw.set_authorizer(None)
            raw.set_progress_handler(None, 0)
            connection.info.pop(_DEADLINE, None)
            try:  # on the DBAPI connection: works whatever state the failed statement left
                raw.execute("PRAGMA query_only = OFF")
            except sqlite3.Error:  # never pool a connection that cannot write: drop it
                connection.invalidate()


def refusal(error: BaseException) -> str | None:
    """Why the database refused a statement of a read-only session: "timeout" (cancelled
    after the statement timeout), "write" (it tried to write), "function" (a function the
    database does not have, or SQLite's authoriser does not allow); None for any other
    error."""
    original = getattr(error, "orig", error)
    code = getattr(original, "sqlstate", None) or getattr(
        getattr(original, "diag", None), "sqlstate", None
    )
    if code == "57014":  # query_canceled: statement_timeout
        return "timeout"
    if code == "25006":  # read_only_sql_transaction
        return "write"
    if code == "42883":  # undefined_function
        return "function"
    message = str(original).lower()
    if "interrupted" in message:
        return "timeout"
    if "readonly database" in message or "read-only" in message:
        return "write"
    if "not authorized" in message or "no such function" in message:
        return "function"
    return None
