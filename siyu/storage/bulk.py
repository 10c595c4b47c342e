"""Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING, run at the driver.

SQLAlchemy runs an executemany with RETURNING as multi-row statements too
("insertmanyvalues"), but builds a parameter dictionary for every row and passes every value
through its generic parameter machinery. For the send step's ledger rows (twenty columns, a
thousand rows a batch) that machinery was two thirds of the insert: 31 µs a row, against
10 µs for the same statement at the driver (docs/scale.md). Here each column's bind processor
(the one SQLAlchemy itself would use, e.g. UTCDateTime's) is looked up once per statement
and applied to the row's value directly, and a statement's text is built once per dialect,
table, column list and page size. Columns a row leaves out get their scalar Python default
(`mapped_column(default=...)`), as SQLAlchemy would give them, else the database's.

SQLite (3.35+) takes the rows as one multi-row VALUES list. PostgreSQL takes them as one array
per column (`INSERT ... SELECT * FROM unnest(%s::integer[], ...)`): psycopg parses a statement's
text for its placeholders in Python and caches the result only for statements under 4,096
characters and 50 parameters, and a page of 500 ledger rows as VALUES has 11,000 placeholders
in 60,000 characters. Profiled through the flow on PostgreSQL (py-spy, docs/scale.md), that
parsing was a quarter of the send step's CPU; the unnest statement is short, so psycopg
parses it once and the server prepares it once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Dialect, Row, Table
from sqlalchemy.exc import DBAPIError

# Parameters per VALUES statement (SQLite; PostgreSQL's arrays are one statement): well under
# SQLite's 32,766.
MAX_PARAMETERS = 10_000

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


Statements = list[tuple[str, tuple[Any, ...]]]


def insert_returning(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    returning: Sequence[str],
) -> list[Row[tuple[Any, ...]]]:
    """Insert `rows` (dicts with the same keys), skipping any that conflict with a row already
    there; returns the `returning` columns of the rows this call inserted."""
    return run_prepared(connection, prepare_insert(connection.dialect, table, rows, returning))


def prepare_insert(
    dialect: Dialect, table: Table, rows: Sequence[dict[str, Any]], returning: Sequence[str]
) -> Statements:
    """The statements and driver parameters of insert_returning(), made before a write
    transaction begins, so that the writer's lock (SQLite has one writer) is not held while
    Python builds them."""
    if not rows:
        return []
    columns, given, fixed = _layout(dialect, table, tuple(rows[0]))
    if dialect.name == "postgresql":
        arrays: list[list[Any]] = [
            [row[column] for row in rows]
            if process is None
            else [process(row[column]) for row in rows]
            for column, process in given
        ]
        arrays.extend([value] * len(rows) for value in fixed)
        return [(_unnest_statement(dialect, table, columns, tuple(returning)), tuple(arrays))]
    page = max(1, MAX_PARAMETERS // len(columns))
    records = _records(rows, given, fixed)
    statements: Statements = []
    for start in range(0, len(records), page):
        chunk = records[start : start + page]
        sql = _statement(dialect, table, columns, tuple(returning), len(chunk))
        statements.append((sql, tuple(chain.from_iterable(chunk))))
    return statements


def _records(
    rows: Sequence[dict[str, Any]], given: list[tuple[str, Processor]], fixed: list[Any]
) -> list[tuple[Any, ...]]:
    """The rows as tuples of driver values, column by column then zipped: a generator per
    row took three times as long (2,000 orders: 18 ms against 6 ms), 8 % of an orders import
    (py-spy over python -m bench.imports)."""
    values = [
        [row[column] for row in rows] if process is None else [process(row[column]) for row in rows]
        for column, process in given
    ]
    values.extend([value] * len(rows) for value in fixed)
    return list(zip(*values, strict=True))


Processor = Callable[[Any], Any] | None


def _layout(
    dialect: Dialect, table: Table, keys: tuple[str, ...]
) -> tuple[tuple[str, ...], list[tuple[str, Processor]], list[Any]]:
    """The statement's columns (the rows' keys, then the defaulted ones), each given column's
    bind processor, and the defaulted columns' processed values."""

    def processor(column: str) -> Processor:
        return table.c[column].type.dialect_impl(dialect).bind_processor(dialect)

    given = [(column, processor(column)) for column in keys]
    defaults = [
        (column.name, column.default.arg)  # type: ignore[attr-defined]
        for column in table.columns
        if column.name not in keys and column.default is not None and column.default.is_scalar
    ]
    fixed = [(p(value) if (p := processor(name)) else value) for name, value in defaults]
    return (*keys, *(name for name, _ in defaults)), given, fixed


def insert_many(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) that need nothing back; a row that conflicts
    with one already there raises. SQLite: one single-row INSERT executed many times at the
    driver (no RETURNING, so no multi-row statement to build). PostgreSQL: COPY ... FROM
    STDIN, the server's bulk load path."""
    if not rows:
        return
    dialect = connection.dialect
    columns, given, fixed = _layout(dialect, table, tuple(rows[0]))
    records = _records(rows, given, fixed)
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    if dialect.name == "postgresql":
        statement = f"COPY {quote(table.name)} ({names}) FROM STDIN"
        driver = connection.connection.driver_connection
        dbapi_error = connection.dialect.loaded_dbapi.Error
        try:
            with driver.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
                for record in records:
                    copy.write_row(record)
        except dbapi_error as error:  # as SQLAlchemy raises the driver's errors
            raise DBAPIError.instance(statement, None, error, dbapi_error) from error
        return
    placeholder = _PLACEHOLDERS[dialect.paramstyle]
    values = ", ".join([placeholder] * len(columns))
    connection.exec_driver_sql(
        f"INSERT INTO {quote(table.name)} ({names}) VALUES ({values})", records
    )


def update_many(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE table SET <the rows' other keys> WHERE id = row["id"], for rows with the same
    keys. SQLite: one statement executed many times at the driver. PostgreSQL: one statement
    for all rows, which arrive as one array per column (`UPDATE ... FROM unnest(...)`):
    psycopg's executemany took 43 µs a row re-importing orders (python -m bench.imports)."""
    if not rows:
        return
    dialect = connection.dialect
    keys = tuple(rows[0])
    given = [(c, table.c[c].type.dialect_impl(dialect).bind_processor(dialect)) for c in keys]
    quote = dialect.identifier_preparer.quote
    name = quote(table.name)
    changed = [c for c in keys if c != "id"]
    if dialect.name == "postgresql":
        arrays = tuple(
            [row[c] for row in rows] if p is None else [p(row[c]) for row in rows] for c, p in given
        )
        types = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in keys)
        sets = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in changed)
        columns = ", ".join(quote(c) for c in keys)
        connection.exec_driver_sql(
            f"UPDATE {name} SET {sets} FROM unnest({types}) AS v({columns}) WHERE {name}.id = v.id",
            arrays,
        )
        return
    placeholder = _PLACEHOLDERS[dialect.paramstyle]
    sets = ", ".join(f"{quote(c)} = {placeholder}" for c in changed)
    order = [*changed, "id"]
    processors = dict(given)
    records = [
        tuple(row[c] if (p := processors[c]) is None else p(row[c]) for c in order) for row in rows
    ]
    connection.exec_driver_sql(f"UPDATE {name} SET {sets} WHERE id = {placeholder}", records)


def run_prepared(connection: Connection, statements: Statements) -> list[Row[tuple[Any, ...]]]:
    inserted: list[Row[tuple[Any, ...]]] = []
    for sql, params in statements:
        inserted.extend(connection.exec_driver_sql(sql, params).all())
    return inserted


@lru_cache(maxsize=64)
def _statement(
    dialect: Dialect, table: Table, columns: tuple[str, ...], returning: tuple[str, ...], rows: int
) -> str:
    placeholder = _PLACEHOLDERS.get(dialect.paramstyle)
    if placeholder is None:
        raise NotImplementedError(f"no bulk insert for paramstyle {dialect.paramstyle!r}")
    quote = dialect.identifier_preparer.quote
    one_row = "(" + ", ".join([placeholder] * len(columns)) + ")"
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES {', '.join([one_row] * rows)} "
        f"ON CONFLICT DO NOTHING RETURNING {', '.join(quote(c) for c in returning)}"
    )


@lru_cache(maxsize=64)
def _unnest_statement(
    dialect: Dialect, table: Table, columns: tuple[str, ...], returning: tuple[str, ...]
) -> str:
    """PostgreSQL: the rows as one array parameter per column, each cast to its column's type
    (an array of NULLs has no type of its own)."""
    quote = dialect.identifier_preparer.quote
    arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
    return (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT DO NOTHING RETURNING {', '.join(quote(c) for c in returning)}"
    )
