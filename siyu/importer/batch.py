"""A batch of CSV rows on its way into the database, and the set-based statements every kind's
loader uses: a lookup of many keys in one query, an insert of many rows in one statement, an
update of many rows by primary key in one statement (siyu/storage/bulk.py).

Why batches: row by row, an import made five to eight round trips per row and ran at 400
(customers) to 1,100 (orders) rows a second on SQLite (`python -m bench.imports`); a brand's
export of ten million orders took hours. A batch makes a handful of statements for a few
thousand rows.

The rules a row obeys are those of a row-by-row import, in file order: a row is checked
against the database as the rows before it in the file left it (the batch's own earlier rows
included), and a bad row changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.orm import Session

from siyu.preview.masking import mask_value
from siyu.storage.bulk import insert_many, insert_returning, update_many
from siyu.storage.id_lists import Column, in_list, list_parameter
from siyu.storage.models import Customer

# Rows per batch: a handful of statements per 2,000 rows, and a batch's rows are all the
# memory an import holds of the file (other sizes were not measured).
BATCH_ROWS = 2_000


@dataclass
class Target:
    """Where a batch goes and what its loader needs besides the rows."""

    session: Session
    now: datetime  # created_at and a consent's updated_at when the file gives none
    ranks: dict[str, int]  # field → its place among a row's problems (the mapping's order)
    # orders: the customers to renumber after the file wait in a temporary table (made once)
    renumber_table: bool = False
    # orders on PostgreSQL: the new orders staged so far for the file's end (staged_orders.py)
    staged: int = 0


@dataclass(slots=True)
class Row:
    """One record of the file: its place, its parsed values, its problems so far."""

    line: str  # "7", or "7-9" for a record over several lines
    raw: list[bytes]  # the record's lines as they are in the file, for the rejects file
    values: dict[str, Any] = field(default_factory=dict)
    # (rank, problem): ranked by the mapping's column order, then the database's findings
    problems: list[tuple[int, str]] = field(default_factory=list)

    def problem(self, rank: int, text: str) -> None:
        self.problems.append((rank, text))

    @property
    def bad(self) -> bool:
        return bool(self.problems)

    def reasons(self) -> list[str]:
        return [text for _, text in sorted(self.problems, key=lambda p: p[0])]


class Refused(Exception):
    """A batch's write conflicted with a row that appeared meanwhile (another writer)."""


def rows_where(
    session: Session,
    key: Column,
    wanted: Iterable[Any],
    *columns: Column,
    also: ColumnElement[bool] | None = None,
) -> list[tuple[Any, ...]]:
    """`columns` of the rows whose `key` is one of `wanted` (and `also` holds), in one query."""
    keys = list(set(wanted))
    if not keys:
        return []
    dialect = session.get_bind().dialect.name
    query = select(*columns).where(in_list(key, "keys", dialect))
    if also is not None:
        query = query.where(also)
    found = session.connection().execute(query, {"keys": list_parameter(keys, dialect)})
    return [tuple(row) for row in found]


def lookup(session: Session, key: Column, wanted: Iterable[Any], value: Column) -> dict[Any, Any]:
    """key → value for the rows whose `key` is one of `wanted` (a unique key)."""
    return dict(rows_where(session, key, wanted, key, value))


def insert_new(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Insert rows that the batch found absent; returns their `returning` columns. A row that
    conflicts (someone else inserted it meanwhile) stops the import instead of being lost."""
    if not rows:
        return []
    inserted = insert_returning(session.connection(), table, rows, returning)
    if len(inserted) != len(rows):
        raise Refused(
            f"{len(rows) - len(inserted)} rows of {table.name} appeared while this import ran "
            "(another import at the same time?)"
        )
    return [tuple(row) for row in inserted]


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that the batch found absent and whose ids nobody needs back (COPY on
    PostgreSQL); a conflict raises and stops the import."""
    insert_many(session.connection(), table, rows)


def update_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE table SET ... WHERE id = row["id"], for rows that may differ in which columns
    they set: one statement per set of columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(row)), []).append(row)
    for columns, same in by_columns.items():
        if columns != ("id",):
            update_many(session.connection(), table, same)


def resolve_customers(target: Target, rows: list[Row]) -> None:
    """An order's or event's `customer` (the CRM's external_id) → the customer's id; a row
    naming a customer the database does not have gets the problem."""
    named = [row for row in rows if "customer" in row.values]
    ids = lookup(
        target.session, Customer.external_id, (r.values["customer"] for r in named), Customer.id
    )
    rank = target.ranks.get("customer", 0)
    for row in named:
        external_id = row.values["customer"]
        found = ids.get(external_id)
        if found is None:
            row.problem(
                rank,
                f"unknown customer '{mask_value('id', external_id)}': import customers first",
            )
        else:
            row.values["customer"] = found
