"""A throwaway copy of the user's database for a backtest: the simulation writes enrollments
and a ledger there, never into the real database.

The copy is a SQLite file. A SQLite database is copied with the sqlite3 backup API (consistent
even while a tick is writing); a PostgreSQL database is read table by table in one read-only
REPEATABLE READ transaction (one consistent snapshot, no lock taken) and streamed into it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, delete, insert, inspect, select
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.storage.models import Base, Delivery, Enrollment, Journey


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        raise ConfigError(
            f"simulate copies the database before it runs, from a SQLite file or a PostgreSQL "
            f"server; {url.split('@')[-1]} is neither"
        )
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ConfigError(f"no database at {path}: run `siyu db upgrade && siyu db seed` first")
    return path


def copy_database(url: str, destination: Path) -> str:
    """Copy the database at `url` (SQLite or PostgreSQL) into the SQLite file `destination`;
    returns the copy's URL."""
    if url.startswith("postgresql"):
        return _copy_from_postgresql(url, destination)
    source = sqlite3.connect(f"file:{sqlite_path(url)}?mode=ro", uri=True)
    target = sqlite3.connect(destination)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{destination}"


COPY_CHUNK = 10_000  # rows per round trip and per insert: memory stays flat for any size


def _copy_from_postgresql(url: str, destination: Path) -> str:
    """Every table the models know, as far as the source has it (a database a migration
    behind still copies), into a fresh SQLite file with the models' schema."""
    from siyu.storage.engine import make_engine

    target_url = f"sqlite:///{destination}"
    source = make_engine(url)
    target = create_engine(target_url)
    try:
        Base.metadata.create_all(target)
        present = inspect(source)
        tables = set(present.get_table_names())
        with source.connect() as reader, target.begin() as writer:
            reader = reader.execution_options(isolation_level="REPEATABLE READ")
            reader.exec_driver_sql("SET TRANSACTION READ ONLY")
            for table in Base.metadata.sorted_tables:
                if table.name not in tables:
                    continue
                names = {column["name"] for column in present.get_columns(table.name)}
                columns = [column for column in table.columns if column.name in names]
                rows = reader.execution_options(yield_per=COPY_CHUNK).execute(select(*columns))
                for chunk in rows.partitions():
                    writer.execute(insert(table), [dict(row._mapping) for row in chunk])
    finally:
        source.dispose()
        target.dispose()
    return target_url


def forget_journey(session: Session, name: str) -> None:
    """The copy starts with no state for the journey: the backtest enrolls from scratch."""
    session.execute(delete(Delivery).where(Delivery.journey_name == name))
    session.execute(delete(Enrollment).where(Enrollment.journey_name == name))
    session.execute(delete(Journey).where(Journey.name == name))


def add_missing_indexes(engine: Engine) -> None:
    """Give the copy every index the models declare on its tables: a database not upgraded
    since the engine's scans got their indexes (migration 0004) still backtests at speed.
    A table the copy lacks is created, empty (a database from before the consent history,
    migration 0010, backtests with none). The copy's tables and data stay as they are."""
    Base.metadata.create_all(engine, checkfirst=True)
    existing = inspect(engine)
    tables = set(existing.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            continue
        present = {index["name"] for index in existing.get_indexes(table.name)}
        columns = {column["name"] for column in existing.get_columns(table.name)}
        for index in table.indexes:
            if index.name not in present and {c.name for c in index.columns} <= columns:
                index.create(engine)
