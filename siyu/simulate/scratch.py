"""A throwaway copy of the user's database for a backtest: the simulation writes enrollments
and a ledger there, never into the real database.

SQLite only: the file is copied with the sqlite3 backup API (consistent even while a tick is
writing). For PostgreSQL, restore a dump into a scratch database and point
SIYU_DATABASE_URL at it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import Session

from db.models import Delivery, Enrollment, Journey
from siyu.errors import ConfigError


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
