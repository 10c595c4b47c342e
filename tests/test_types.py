"""UTCDateTime: aware UTC in Python on both databases; on SQLite the stored text is exactly
what SQLAlchemy's own DateTime writes, so rows written before the fast processors (and by
raw SQL in bench/data.py and siyu/storage/demo_data.py) read back the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from siyu.storage.types import UTCDateTime

MOMENTS = [
    datetime(2026, 12, 1, 2, 0, tzinfo=UTC),  # microsecond 0: isoformat would drop it
    datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 11, 23, 9, 30, 0, 123, tzinfo=timezone(timedelta(hours=8))),
]


def _table() -> Table:
    return Table(
        "moments", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime)
    )


def test_sqlite_text_is_sqlalchemys_own_format() -> None:
    ours = UTCDateTime().bind_processor(sqlite.dialect())
    theirs = DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
    assert ours is not None and theirs is not None
    for moment in MOMENTS:
        assert ours(moment) == theirs(moment.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        ours(datetime(2026, 12, 1, 2, 0))


def test_round_trip_and_older_text(sessions: sessionmaker[Session]) -> None:
    table = _table()
    with sessions() as session, session.begin():
        table.create(session.connection())
        session.execute(table.insert(), [{"id": i, "at": m} for i, m in enumerate(MOMENTS)])
    with sessions() as session:
        read = dict(session.execute(select(table.c.id, table.c.at)).tuples().all())
    for i, moment in enumerate(MOMENTS):
        assert read[i] == moment and read[i].tzinfo == UTC
    if sessions.kw["bind"].dialect.name != "sqlite":
        return
    # Text in the shapes other writers have used: no microseconds, a "T", a date.
    with sessions() as session, session.begin():
        session.execute(
            text(
                "INSERT INTO moments VALUES (10, '2026-12-01 02:00:00'), "
                "(11, '2026-12-01T02:00:00.500000'), (12, NULL)"
            )
        )
    with sessions() as session:
        rows = dict(
            session.execute(select(table.c.id, table.c.at).where(table.c.id >= 10)).tuples().all()
        )
    assert rows == {
        10: datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        11: datetime(2026, 12, 1, 2, 0, 0, 500000, tzinfo=UTC),
        12: None,
    }
