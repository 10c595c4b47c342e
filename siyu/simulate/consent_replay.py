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

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Integer, TextClause, bindparam, column, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.storage.consent_changes import (
    ABSENT,
    CONSENT,
    DENIED,
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

# One target state per customer and purpose or channel (the scratch copy's own temp table).
_TARGETS = """CREATE TEMP TABLE IF NOT EXISTS replay_targets (
    customer_id INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    state TEXT NOT NULL, since TIMESTAMP, source TEXT,
    PRIMARY KEY (customer_id, kind, name))"""

# At `start`: the state before each key's first change after it.
_REWIND = _sql(
    """INSERT INTO replay_targets
    SELECT customer_id, kind, name, previous, COALESCE(previous_since, at), source FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY customer_id, kind, name ORDER BY at, id) AS n
        FROM consent_changes WHERE at > :start AND id <= :last)
    WHERE n = 1""",
    "start",
)

# Before a tick: each key's last change since the previous tick.
_ADVANCE = _sql(
    """INSERT INTO replay_targets
    SELECT customer_id, kind, name, state, at, source FROM (
        SELECT *, ROW_NUMBER() OVER (
            PARTITION BY customer_id, kind, name ORDER BY at DESC, id DESC) AS n
        FROM consent_changes WHERE at > :after AND at <= :now AND id <= :last)
    WHERE n = 1""",
    "after",
    "now",
)

_CONSENT_ROW = f"""FROM replay_targets t JOIN consents c
    ON c.customer_id = t.customer_id AND c.purpose = t.name WHERE t.kind = '{CONSENT}'"""
_SUPPRESSION_ROW = f"""FROM replay_targets t JOIN suppressions s
    ON s.customer_id = t.customer_id AND s.channel = t.name WHERE t.kind = '{SUPPRESSION}'"""
_KEPT = f"t.state IN ('{GRANTED}', '{DENIED}')"
# The targets onto the copy's rows: removed, changed or added.
_APPLY = (
    f"DELETE FROM consents WHERE id IN (SELECT c.id {_CONSENT_ROW} AND t.state = '{ABSENT}')",
    f"""UPDATE consents SET
        granted = (SELECT t.state = '{GRANTED}' {_CONSENT_ROW} AND c.id = consents.id),
        updated_at = (SELECT t.since {_CONSENT_ROW} AND c.id = consents.id)
    WHERE id IN (SELECT c.id {_CONSENT_ROW} AND {_KEPT})""",
    f"""INSERT INTO consents (customer_id, purpose, granted, source, updated_at)
    SELECT t.customer_id, t.name, t.state = '{GRANTED}', t.source, t.since
    FROM replay_targets t WHERE t.kind = '{CONSENT}' AND {_KEPT} AND NOT EXISTS (
        SELECT 1 FROM consents c WHERE c.customer_id = t.customer_id AND c.purpose = t.name)""",
    f"DELETE FROM suppressions WHERE id IN (SELECT s.id {_SUPPRESSION_ROW} AND t.state = "
    f"'{ABSENT}')",
    f"""INSERT INTO suppressions (customer_id, channel, reason, created_at)
    SELECT t.customer_id, t.name, COALESCE(t.source, 'as before'), t.since
    FROM replay_targets t WHERE t.kind = '{SUPPRESSION}' AND t.state = '{SUPPRESSED}'
    AND NOT EXISTS (SELECT 1 FROM suppressions s
        WHERE s.customer_id = t.customer_id AND s.channel = t.name)""",
    "DELETE FROM replay_targets",
)


@dataclass(frozen=True)
class Undated:
    """Customers whose consent the data does not give before some moment of the backtest:
    until `until` (the latest such moment) the backtest keeps it as first recorded."""

    customers: int
    until: datetime


class ConsentReplay:
    """Keeps the scratch copy's consents and suppressions at the simulated moment: call
    advance(now) before each tick (the first with `start`)."""

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
            _apply(connection, _REWIND, {"start": start, "last": self._last})
            self._through = start
            self._next = self._next_change(connection, start)

    def _undated(self, connection: Connection, start: datetime) -> Undated | None:
        found = connection.execute(_UNDATED, {"start": start, "last": self._last}).all()
        if not found:
            return None
        return Undated(len({customer for customer, _ in found}), max(s for _, s in found))

    def _next_change(self, connection: Connection, after: datetime) -> datetime | None:
        return connection.scalar(
            select(func.min(ConsentChange.at)).where(
                ConsentChange.at > after, ConsentChange.id <= self._last
            )
        )

    def advance(self, now: datetime) -> None:
        """Apply the changes after the last moment and up to `now` (a change at a tick's own
        moment counts for that tick). Costs nothing until the next change is due."""
        if self._next is None or self._next > now:
            self._through = max(self._through, now)
            return
        with self._sessions() as session, session.begin():
            connection = session.connection()
            _apply(connection, _ADVANCE, {"after": self._through, "now": now, "last": self._last})
            self._next = self._next_change(connection, now)
        self._through = now


def _apply(connection: Connection, targets: TextClause, moments: dict[str, object]) -> None:
    """Fill the targets (a temp table: one per connection, so made where it is used), then
    write them onto the copy's rows."""
    connection.execute(text(_TARGETS))
    connection.execute(targets, moments)
    for statement in _APPLY:
        connection.execute(text(statement))
