"""Where a journey's own SQL runs: `entry.where`, `entry.audience`, `exit_when.where`,
`goal.where` and a step's `if:` conditions. It always runs in a read-only session with a
statement timeout (siyu.storage.engine.read_only_session), never inside a write transaction: on
SQLite the single writer's lock is never held while a marketer's condition runs, and on PostgreSQL
a condition cannot advance a sequence or write a row.

When the database refuses such a statement (timed out, tried to write, called a function
SQLite does not allow), the phase fails with one line naming the journey's file and clause.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from siyu.errors import ConfigError
from siyu.language.spec import JourneySpec
from siyu.storage.engine import (
    MARKETER_SQL_TIMEOUT_ENV,
    marketer_sql_timeout,
    read_only_session,
    refusal,
)

_HEAD = 64 * 1024  # the `journey:` key is near the top; never read a whole (huge) file here


class MarketerSqlError(ConfigError):
    """A journey's own SQL was refused or cancelled by the database at run time."""


def journey_file(journeys_dir: Path | None, name: str) -> str | None:
    """The file (journeys/<file>) whose `journey:` is `name`, for messages; None if unknown."""
    if journeys_dir is None or not journeys_dir.is_dir():
        return None
    key = re.compile(rf"""^journey:\s*["']?{re.escape(name)}["']?\s*(#.*)?$""", re.MULTILINE)
    for path in sorted([*journeys_dir.glob("*.yaml"), *journeys_dir.glob("*.yml")]):
        try:
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                head = handle.read(_HEAD).decode("utf-8", errors="replace")
        except OSError:
            continue
        if key.search(head):
            return f"{journeys_dir.name}/{path.name}"
    return None


def _message(spec: JourneySpec, clause: str, reason: str, journeys_dir: Path | None) -> str:
    where = journey_file(journeys_dir, spec.journey) or f"journey '{spec.journey}'"
    what = f"{where}: {clause} (journey '{spec.journey}')"
    if reason == "timeout":
        return (
            f"{what} was cancelled after {marketer_sql_timeout():g} s "
            f"({MARKETER_SQL_TIMEOUT_ENV}); make the condition cheaper or raise the limit"
        )
    if reason == "write":
        return f"{what} tried to write to the database; a journey's SQL only reads"
    return (
        f"{what} calls a function that is not allowed or does not exist on this database; "
        "run `siyu validate` to see which"
    )


@contextmanager
def journey_sql(spec: JourneySpec, clause: str, journeys_dir: Path | None) -> Iterator[None]:
    """Turn the database's refusal of the journey's SQL into one line naming file and clause;
    any other database error passes unchanged."""
    try:
        yield
    except DBAPIError as error:
        reason = refusal(error)
        if reason is None:
            raise
        raise MarketerSqlError(_message(spec, clause, reason, journeys_dir)) from None


@contextmanager
def marketer_read(
    sessions: sessionmaker[Session], spec: JourneySpec, clause: str, journeys_dir: Path | None
) -> Iterator[Session]:
    """A read-only session (statement timeout included) for `clause` of the journey."""
    with journey_sql(spec, clause, journeys_dir), read_only_session(sessions) as session:
        yield session


def journeys_dir_of(templates_dir: Path) -> Path:
    """The project's journeys/ folder, beside templates/."""
    return templates_dir.parent / "journeys"
