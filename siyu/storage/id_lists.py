"""`column IN (ids)` for a list bound at execution, written the way each database takes it best.

PostgreSQL: `column = ANY(:ids)`, one array parameter. psycopg parses a statement's text for
its placeholders in Python and caches that only for statements under 4,096 characters and 50
parameters; an IN list of 500 ids is 500 placeholders, parsed again on every execution (with
the ledger's multi-row inserts, a quarter of the send step's CPU in a profiled tick on
PostgreSQL, docs/scale.md), and planned again by the server. With one array parameter the text
is the same for every list, so both happen once. SQLite has no arrays: an expanding IN.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute

Column = ColumnElement[Any] | QueryableAttribute[Any]


def in_ids(column: Column, name: str, dialect: str) -> ColumnElement[bool]:
    """`column` is one of the list bound to parameter `name`, for the dialect named."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def in_list(column: Column, name: str, dialect: str) -> ColumnElement[bool]:
    """`column` is one of a long list of any type bound to parameter `name` (give it
    `list_parameter(values, dialect)`): PostgreSQL as in_ids; SQLite reads the list from one
    JSON text (`IN (SELECT value FROM json_each(:name))`), so the statement's text is the same
    for every list and SQLite's statement cache keeps it: an import's lookups of 2,000 keys
    took half the time an expanding IN took (python -m bench.imports)."""
    if dialect == "postgresql":
        return in_ids(column, name, dialect)
    values: Select[tuple[Any]] = select(literal_column("value")).select_from(
        func.json_each(bindparam(name))
    )
    return column.in_(values.scalar_subquery())


def list_parameter(values: Iterable[Any], dialect: str) -> Any:
    """The value of an in_list() parameter."""
    return list(values) if dialect == "postgresql" else json.dumps(list(values))
