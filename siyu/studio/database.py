"""The database as the studio reads it: only if it is there. A SQLite file that does not
exist is never created by looking at it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, make_url
from sqlalchemy.exc import ArgumentError

from siyu.storage.engine import make_engine


def existing_database(database_url: str | None) -> Engine | None:
    """An engine on the database, or None: no URL, one that cannot be parsed, or a SQLite
    file that is not there. The caller disposes of the engine."""
    if not database_url:
        return None
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return None
    return make_engine(database_url)
