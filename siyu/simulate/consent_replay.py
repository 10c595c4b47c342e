"""Consents and suppressions as they were at each simulated moment, on a backtest's scratch
copy (thrown away afterwards, so rewritten freely), from their history (consent_changes,
siyu/storage/consent_changes.py).

Before the first tick, every consent and suppression changed after `start` is turned back to
its state before its first change after `start`. A suppression written before the history
existed is dated by its created_at: suppressions are only ever added, so before that moment
there was none. Before each later tick, the changes since the previous tick are applied (the
last one of each customer's purpose or channel wins). The engine reads the copy's rows as
usual: the live engine's code is the backtest's.

What the data does not date stays as it is now: a consent updated after `start` with no
change recorded since `start` (written before the history existed, by an import that did not
map `consent_at`, by hand), or one whose earlier state is known only from a moment after
`start`. Those customers are counted (ConsentReplay.undated) and the backtest says so.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Integer, TextClause, bindparam, column, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.storage.consent_changes import (
    ABSENT,
    CONSENT,
    GRANTED,
    SUPPRESSED,
    SUPPRESSION,
)
from siyu.storage.models import Base, ConsentChange
from siyu.storage.types import UTCDateTime


def _sql(statement: str, *moments: str) -> TextClause:
    """A statement whose named moments bind as the models' timestamps (stored text on SQLite)."""
    return text(statement).bindparams(*(bindparam(m, type_=UTCDateTime()) for m in moments))


# Suppressions without a recorded change (written before the history): their creation is one.
_DATE_SUPPRESSIONS = _sql(
    f"""INSERT INTO consent_changes
        (customer_id, kind, name, previous, previous_since, state, at, source)
    SELECT s.customer_id, '{SUPPRESSION}', s.channel, '{ABSENT}', NULL, '{SUPPRESSED}',
        s.created_at, s.reason
    FROM suppressions s
    WHERE s.created_at > :start AND NOT EXISTS (
        SELECT 1 FROM consent_changes h WHERE h.customer_id = s.customer_id
        AND h.kind = '{SUPPRESSION}' AND h.name = s.channel)""",
    "start",
)

# The customers whose consent at `start` the data does not give, and from when it does.
_UNDATED = _sql(
    f"""SELECT customer_id, since FROM (
        SELECT c.customer_id, c.updated_at AS since FROM consents c
        WHERE c.updated_at > :start AND NOT EXISTS (
            SELECT 1 FROM consent_changes h WHERE h.customer_id = c.customer_id
            AND h.kind = '{CONSENT}' AND h.name = c.purpose AND h.at > :start
            AND h.id <= :last)
        UNION ALL
        SELECT customer_id, previous_since FROM (
            SELECT customer_id, previous_since, ROW_NUMBER() OVER (
                PARTITION BY customer_id, name ORDER BY at, id) AS n
            FROM consent_changes
            WHERE kind = '{CONSENT}' AND at > :start AND id <= :last)
        WHERE n = 1 AND previous_since > :start)""",
    "start",
).columns(column("customer_id", Integer), column("since", UTCDateTime()))

# The target state of each customer's purpose or channel: (customer_id, kind, name, state,
# since, source). At `start`: the state before each key's first change after it.
_REWIND = """SELECT customer_id, kind, name, previous, COALESCE(previous_since, at), source FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY customer_id, kind, name ORDER BY at, id) AS n
    FROM consent_changes WHERE at > ? AND id <= ?)
WHERE n = 1"""
# Before a tick: each key's last change since the previous tick.
_ADVANCE = """SELECT customer_id, kind, name, state, at, source FROM (
    SELECT *, ROW_NUMBER() OVER (
        PARTITION BY customer_id, kind, name ORDER BY at DESC, id DESC) AS n
    FROM consent_changes WHERE at > ? AND at <= ? AND id <= ?)
WHERE n = 1"""
_NEXT = "SELECT at FROM consent_changes WHERE at > ? AND id <= ? ORDER BY at LIMIT 1"

# Each target onto the copy's row, by its unique key (customer and purpose, customer and
# channel): written over or added, or removed.
_SET = {
    CONSENT: """INSERT INTO consents (customer_id, purpose, granted, updated_at, source)
        VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id, purpose) DO UPDATE SET
        granted = excluded.granted, updated_at = excluded.updated_at""",
    SUPPRESSION: """INSERT INTO suppressions (customer_id, channel, created_at, reason)
        VALUES (?, ?, ?, COALESCE(?, 'as before')) ON CONFLICT (customer_id, channel) DO NOTHING""",
}
_REMOVE = {
    CONSENT: "DELETE FROM consents WHERE customer_id = ? AND purpose = ?",
    SUPPRESSION: "DELETE FROM suppressions WHERE customer_id = ? AND channel = ?",
}
_CHUNK = 10_000  # targets per round of statements: memory stays flat for any history


def _stored(moment: datetime) -> str:
    """A moment as the models store it in SQLite (siyu/storage/types.py UTCDateTime)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


@dataclass(frozen=True)
class Undated:
    """Customers whose consent the data does not give before some moment of the backtest:
    until `until` (the latest such moment) the backtest keeps it as first recorded."""

    customers: int
    until: datetime


class ConsentReplay:
    """Keeps the scratch copy's consents and suppressions at the simulated moment: call
    advance(now) before each tick (the first with `start`). The copy is SQLite: the per-tick
    statements go to the driver directly, a few a tick when consents change, none otherwise."""

    def __init__(self, sessions: sessionmaker[Session], start: datetime) -> None:
        self._sessions = sessions
        with sessions() as session, session.begin():
            connection = session.connection()
            # a copy of a database from before the history (migration 0010) has no table
            Base.metadata.tables[ConsentChange.__tablename__].create(connection, checkfirst=True)
            connection.execute(_DATE_SUPPRESSIONS, {"start": start})
            # the engine's own suppressions in the copy (ids above this) are not history
            self._last = connection.scalar(select(func.max(ConsentChange.id))) or 0
            self.undated = self._undated(connection, start)
            cursor = _cursor(connection)
            _apply(cursor.execute(_REWIND, (_stored(start), self._last)))
            self._next = self._next_change(cursor, _stored(start))
        self._through = _stored(start)

    def _undated(self, connection: Connection, start: datetime) -> Undated | None:
        found = connection.execute(_UNDATED, {"start": start, "last": self._last}).all()
        if not found:
            return None
        return Undated(len({customer for customer, _ in found}), max(s for _, s in found))

    def _next_change(self, cursor: sqlite3.Cursor, after: str) -> str | None:
        found = cursor.execute(_NEXT, (after, self._last)).fetchone()
        return None if found is None else str(found[0])

    def advance(self, now: datetime) -> None:
        """Apply the changes after the last moment and up to `now` (a change at a tick's own
        moment counts for that tick). Costs nothing until the next change is due."""
        until = _stored(now)
        if self._next is None or self._next > until:
            self._through = max(self._through, until)
            return
        with self._sessions() as session, session.begin():
            cursor = _cursor(session.connection())
            _apply(cursor.execute(_ADVANCE, (self._through, until, self._last)))
            self._next = self._next_change(cursor, until)
        self._through = until


def _cursor(connection: Connection) -> sqlite3.Cursor:
    """A driver cursor in the session's transaction (the copy is always SQLite)."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver.cursor()


def _apply(targets: sqlite3.Cursor) -> None:
    """Write the target states the query selected onto the copy's rows, a chunk at a time;
    each statement runs once (executemany) for all of a chunk's rows."""
    writer = targets.connection.cursor()  # `targets` is still being read
    while chunk := targets.fetchmany(_CHUNK):
        sets: dict[str, list[tuple[object, ...]]] = {CONSENT: [], SUPPRESSION: []}
        removes: dict[str, list[tuple[object, ...]]] = {CONSENT: [], SUPPRESSION: []}
        for customer_id, kind, name, state, since, source in chunk:
            if state == ABSENT:
                removes[kind].append((customer_id, name))
            elif kind == CONSENT:
                sets[kind].append((customer_id, name, state == GRANTED, since, source))
            else:
                sets[kind].append((customer_id, name, since, source))
        for kind in (CONSENT, SUPPRESSION):
            writer.executemany(_REMOVE[kind], removes[kind])
            writer.executemany(_SET[kind], sets[kind])
