"""A throwaway copy of the user's database for a backtest: the simulation writes enrollments
and a ledger there, never into the real database.

SQLite only: the file is copied with the sqlite3 backup API (consistent even while a tick is
writing). For PostgreSQL, restore a dump into a scratch database and point
SIYU_DATABASE_URL at it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, delete, inspect
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.storage.models import Base, Delivery, Enrollment, Journey


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        raise ConfigError(
            f"simulate copies the database before it runs and can only copy a SQLite file; "
            f"{url.split('@')[-1]} is not one. Restore a dump into a scratch database and set "
            "SIYU_DATABASE_URL to a SQLite copy, or run on the demo data (siyu db seed)"
        )
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ConfigError(f"no database at {path}: run `siyu db upgrade && siyu db seed` first")
    return path


def copy_database(url: str, destination: Path) -> str:
    """Copy the SQLite database at `url` to `destination`; returns the copy's URL."""
    source = sqlite3.connect(f"file:{sqlite_path(url)}?mode=ro", uri=True)
    target = sqlite3.connect(destination)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{destination}"


def forget_journey(session: Session, name: str) -> None:
    """The copy starts with no state for the journey: the backtest enrolls from scratch."""
    session.execute(delete(Delivery).where(Delivery.journey_name == name))
    session.execute(delete(Enrollment).where(Enrollment.journey_name == name))
    session.execute(delete(Journey).where(Journey.name == name))


def add_missing_indexes(engine: Engine) -> None:
    """Give the copy every index the models declare on its tables: a database not upgraded
    since the engine's scans got their indexes (migration 0004) still backtests at speed.
    Only indexes are added; the copy's tables and data stay as they are."""
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
