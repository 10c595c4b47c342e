"""Column types shared by the models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite keeps no time zone, PostgreSQL does; storing naive UTC everywhere and attaching
    UTC on the way out makes both behave the same and keeps comparisons exact.
    """

    impl = DateTime
    cache_ok = True

    # SQLite: one C-level isoformat / fromisoformat per value instead of SQLAlchemy's
    # generic processors (a strftime-style format and a regex), which with this decorator
    # ran twice per value and were a tenth of a send step's time. The stored text is the
    # same as SQLAlchemy's: "YYYY-MM-DD HH:MM:SS.ffffff" (tests/test_types.py).
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        last: list[tuple[datetime | None, str | None]] = [(None, None)]

        def to_text(value: datetime | None) -> str | None:
            if value is None:
                return None
            seen, text = last[0]  # a batch binds the tick's `now` many times over
            if value is seen:
                return text
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r} given where an aware one is required")
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            last[0] = (value, text)  # one tuple: threads never see a value with another's text
            return text

        return to_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return self._from_sqlite_text

    def _from_sqlite_text(self, value: Any) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given where an aware one is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL results on SQLite
            value = datetime.fromisoformat(value)
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


_UTC = UTCDateTime()
_DIALECT_UNUSED: Any = None


def as_utc(value: Any) -> datetime:
    """A timestamp from an untyped result column (MIN() or a sub-query on SQLite)."""
    result = _UTC.process_result_value(value, _DIALECT_UNUSED)
    if result is None:
        raise ValueError("expected a timestamp, got NULL")
    return result
