"""One row of fleet-wide state, locked for the length of a write transaction: the shared
access tokens (siyu/channels/token_store.py) and rate buckets (siyu/channels/rate_store.py)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

Row = TypeVar("Row")


def locked_row(
    session: Session, model: type[Row], key: str, lock_timeout_ms: int, **defaults: Any
) -> Row:
    """The row of `model` whose `key` is `key`, inserted with `defaults` when missing, locked
    until the transaction ends. PostgreSQL: INSERT ... ON CONFLICT DO NOTHING makes sure it
    exists, then the row's lock (FOR UPDATE), waiting at most `lock_timeout_ms`; SQLite needs
    no row lock: the session holds the database's write lock (storage.engine.write_session)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(model).values(key=key, **defaults).on_conflict_do_nothing(index_elements=["key"])
    )
    column = getattr(model, "key")  # noqa: B009 - every such model's primary key
    return session.scalars(select(model).where(column == key).with_for_update()).one()
