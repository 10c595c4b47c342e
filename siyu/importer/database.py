"""The import's one transaction, on a database that exists and is migrated. Checked before
anything is read: a missing SQLite file is not created (no stray empty database), a schema
without the tables says `run siyu db upgrade first` in one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.importer.csv_import import ImportAborted
from siyu.storage.engine import database_url, make_engine, make_sessionmaker
from siyu.storage.statistics import refresh_stale_statistics

TABLES = ("customers", "channel_identities", "consents", "orders", "events")
UPGRADE = "run `siyu db upgrade` first"


@contextmanager
def import_session(url: str | None = None) -> Iterator[Session]:
    """A session in a transaction, committed when the block ends without an error."""
    url = url or database_url()
    shown = _require_file(url)
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _large_page_cache)
    try:
        _require_schema(engine, shown)
        with make_sessionmaker(engine)() as session:
            try:
                with session.begin():
                    yield session
            except SQLAlchemyError as error:  # at commit: the body's own are ImportAborted
                raise ImportAborted(
                    f"the database refused the import ({_first_line(error)}); "
                    "nothing from this file was imported"
                ) from None
        # A large file leaves the planner's statistics behind: the next tick's plans need them.
        refresh_stale_statistics(engine, TABLES)
    finally:
        engine.dispose()


# An import writes rows in the order of the file, so every index of a large table takes
# inserts all over its B-tree; with SQLite's default 2 MiB of cached pages each is a read
# from the file. 256 MiB (at most: the cache grows only as pages are used) ran the bench's
# 200,000 orders into 200,000 others at ... (python -m bench.imports).
IMPORT_CACHE_KIB = 262_144


def _large_page_cache(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA cache_size=-{IMPORT_CACHE_KIB}")
    cursor.close()


def _require_file(url: str) -> str:
    """The URL as it may be shown; for SQLite, the file must already exist."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("SIYU_DATABASE_URL is not a database URL") from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        if not database.startswith("file:") and not Path(database).is_file():
            raise ConfigError(f"no database at {database}: {UPGRADE}")
    return parsed.render_as_string(hide_password=True)


def _require_schema(engine: Engine, shown: str) -> None:
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            version = (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                if "alembic_version" in present
                else None
            )
    except SQLAlchemyError as error:
        raise ConfigError(f"cannot use the database {shown} ({_first_line(error)})") from None
    if not set(TABLES) <= present:
        raise ConfigError(f"the database {shown} is not migrated: {UPGRADE}")
    if version is not None and version != _head():
        raise ConfigError(
            f"the database {shown} is at migration {version}, not the latest: {UPGRADE}"
        )


def _head() -> str | None:
    from alembic.script import ScriptDirectory

    from siyu.storage.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _first_line(error: Exception) -> str:
    from siyu.preview.masking import mask_text

    message = str(getattr(error, "orig", None) or error).strip().splitlines()
    return mask_text(message[0][:200] if message else type(error).__name__)
