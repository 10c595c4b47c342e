"""Orders and events of one batch into the database, each matched on its key in the CRM
(order_no, the event's external_id): a new key is inserted, a known one updated. After the
whole file, every customer whose orders changed gets order_seq renumbered by payment time, so
`order_seq = 1` (a first purchase) stays true after a late import."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, func, select, update

from siyu.importer.batch import Row, Target, insert_rows, resolve_customers, rows_where, update_rows
from siyu.importer.staged_orders import insert_staged, restage, stage, staged
from siyu.storage.id_lists import in_ids
from siyu.storage.models import Event, Order

_ORDERS: Table = Order.__table__  # type: ignore[assignment]
_EVENTS: Table = Event.__table__  # type: ignore[assignment]
UNCATEGORISED = "未分类"
# Customers renumbered per statement (a window over their orders).
RENUMBER_CUSTOMERS = 2_000


def load_orders(target: Target, rows: list[Row]) -> list[str | None]:
    def columns(values: dict[str, Any]) -> dict[str, Any]:
        return {
            "customer_id": values["customer"],
            "paid_at": values["paid_at"],
            "amount": values["amount"],
            "category": values.get("category") or UNCATEGORISED,
            "store": values.get("store"),
        }

    return _upsert(target, rows, _ORDERS, "order_no", columns, {"order_seq": 0})


def load_events(target: Target, rows: list[Row]) -> list[str | None]:
    def columns(values: dict[str, Any]) -> dict[str, Any]:
        return {
            "customer_id": values["customer"],
            "name": values["name"],
            "occurred_at": values["occurred_at"],
            "properties": values.get("properties", {}),
        }

    return _upsert(target, rows, _EVENTS, "external_id", columns, {})


def _upsert(
    target: Target,
    rows: list[Row],
    table: Table,
    key: str,
    columns: Callable[[dict[str, Any]], dict[str, Any]],
    on_insert: dict[str, Any],
) -> list[str | None]:
    """Insert the batch's new keys; update the known ones whose columns differ (a daily full
    export changes few rows, and an UPDATE is the dearest statement here: 36 µs a row on
    PostgreSQL, python -m bench.imports)."""
    resolve_customers(target, rows)
    good = [row for row in rows if not row.bad]
    if not good:
        return [None] * len(rows)
    names = list(columns(good[0].values))
    known = {
        found[0]: (found[1], dict(zip(names, found[2:], strict=True)))
        for found in rows_where(
            target.session,
            table.c[key],
            (r.values[key] for r in good),
            table.c[key],
            table.c.id,
            *(table.c[name] for name in names),
        )
    }
    # PostgreSQL: new orders wait in a staging table for the file's end (staged_orders.py),
    # where a key repeated from an earlier batch is found
    staging = table is _ORDERS and target.session.connection().dialect.name == "postgresql"
    in_staging = (
        staged(target, [r.values[key] for r in good if r.values[key] not in known])
        if staging
        else {}
    )
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    restaged: list[dict[str, Any]] = []
    unchanged: set[str] = set()
    renumber: set[int] = set()  # customers whose order_seq the file's end must set
    for row in good:
        wanted = columns(row.values)
        found = known.get(row.values[key])
        if found is None and (waiting := in_staging.get(row.values[key])) is not None:
            # numbered at the file's end whatever it changes: nobody to renumber
            if wanted == waiting[1]:
                unchanged.add(row.values[key])
            else:
                restaged.append({"id": waiting[0], **wanted})
        elif found is None:
            # a new order's customer is renumbered only when it arrives out of payment
            # order (_numbered_in_time_order)
            inserts.append({key: row.values[key], **on_insert, **wanted})
        elif wanted == found[1]:
            unchanged.add(row.values[key])
        else:
            updates.append({"id": found[0], **wanted})
            before = found[1]
            place, was = (
                (wanted["customer_id"], wanted.get("paid_at")),
                (
                    before["customer_id"],
                    before.get("paid_at"),
                ),
            )
            if table is _ORDERS and place != was:  # moved or re-timed: both renumbered
                renumber.update((wanted["customer_id"], before["customer_id"]))
    if staging:
        stage(target, inserts)
        restage(target, restaged)
        inserts = []
        _renumber_later(target, renumber)
    elif table is _ORDERS:
        inserts = _numbered_in_time_order(target, inserts, renumber)
        _renumber_later(target, renumber)
    insert_rows(target.session, table, inserts)
    update_rows(target.session, table, updates)
    return [
        None
        if row.bad
        else "inserted"
        if row.values[key] not in known and row.values[key] not in in_staging
        else "unchanged"
        if row.values[key] in unchanged
        else "updated"
        for row in rows
    ]


def _numbered_in_time_order(
    target: Target, inserts: list[dict[str, Any]], renumber: set[int]
) -> list[dict[str, Any]]:
    """The batch's new orders in payment order, each with the order_seq it has if it is its
    customer's latest so far (a CRM export is usually in time order): renumbering then finds
    nothing to change, where an UPDATE of every fresh order cost a PostgreSQL import 7.5 s
    per 200,000 (python -m bench.imports). An order paid before one already there gets 0,
    for the renumbering to set."""
    if not inserts:
        return inserts
    connection = target.session.connection()
    customers = list({row["customer_id"] for row in inserts})
    # At the driver, the latest payment as the database returns it, parsed here once: this
    # query is a tenth of an orders import on SQLite (py-spy over python -m bench.imports),
    # most of it SQLite's walk of each customer's index entries; SQLAlchemy's result rows
    # and the UTCDateTime processor added 0.6 of those 10 points.
    if connection.dialect.name == "postgresql":
        found = connection.exec_driver_sql(_LATEST_PG, (customers,))
    else:
        found = connection.exec_driver_sql(_LATEST_SQLITE, (json.dumps(customers),))
    latest: dict[int, tuple[int, datetime]] = {
        customer: (
            count,
            (datetime.fromisoformat(last) if isinstance(last, str) else last).replace(tzinfo=UTC),
        )
        for customer, count, last in found
    }
    ordered = sorted(inserts, key=lambda row: row["paid_at"])  # ids follow this order
    for row in ordered:
        customer, paid = row["customer_id"], row["paid_at"]
        count, last = latest.get(customer, (0, paid))
        if paid >= last:  # a tie comes after: renumbering orders by (paid_at, id)
            row["order_seq"] = count + 1
            latest[customer] = (count + 1, paid)
        else:
            row["order_seq"] = 0
            renumber.add(customer)
    return ordered


_LATEST = (
    "SELECT customer_id, count(*), max(paid_at) FROM orders WHERE customer_id {} "
    "GROUP BY customer_id"
)
_LATEST_PG = _LATEST.format("= ANY(%s::integer[])")
_LATEST_SQLITE = _LATEST.format("IN (SELECT value FROM json_each(?))")


# The customers to renumber, noted batch by batch: an export out of payment order can name
# millions, which an import holds in the database instead of in memory.
_TO_RENUMBER = "siyu_import_renumber"


def _renumber_later(target: Target, customers: set[int]) -> None:
    if not customers:
        return
    connection = target.session.connection()
    postgresql = connection.dialect.name == "postgresql"
    if not target.renumber_table:
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_TO_RENUMBER} (customer_id INTEGER PRIMARY KEY)"
            + (" ON COMMIT DROP" if postgresql else "")
        )
        connection.exec_driver_sql(f"DELETE FROM {_TO_RENUMBER}")  # one left by another import
        target.renumber_table = True
    if postgresql:
        connection.exec_driver_sql(
            f"INSERT INTO {_TO_RENUMBER} SELECT unnest(%s::integer[]) ON CONFLICT DO NOTHING",
            (list(customers),),
        )
    else:
        connection.exec_driver_sql(
            f"INSERT OR IGNORE INTO {_TO_RENUMBER} SELECT value FROM json_each(?)",
            (json.dumps(list(customers)),),
        )


def finish_orders(target: Target) -> None:
    """At the file's end: the staged new orders into `orders` (PostgreSQL), then the
    renumbering of the customers noted for it."""
    _renumber_later(target, insert_staged(target))
    renumber_orders(target)


def renumber_orders(target: Target) -> None:
    """order_seq = 1, 2, ... by payment time (then id) for each customer noted by
    _renumber_later, set in the database by a window function, a few thousand customers per
    statement."""
    if not target.renumber_table:
        return
    session = target.session
    connection = session.connection()
    dialect = connection.dialect.name
    seq = (
        func.row_number()
        .over(partition_by=_ORDERS.c.customer_id, order_by=(_ORDERS.c.paid_at, _ORDERS.c.id))
        .label("seq")
    )
    ranked = (
        select(_ORDERS.c.id, seq)
        .where(in_ids(_ORDERS.c.customer_id, "customers", dialect))
        .subquery("ranked")
    )
    statement = (
        update(_ORDERS)
        .where(
            _ORDERS.c.id == ranked.c.id,
            _ORDERS.c.order_seq != ranked.c.seq,
            # the same customers on the updated side too: without it PostgreSQL joined the
            # ranked rows to a scan of the whole table, once per statement
            in_ids(_ORDERS.c.customer_id, "customers", dialect),
        )
        .values(order_seq=ranked.c.seq)
    )
    page = (
        f"SELECT customer_id FROM {_TO_RENUMBER} WHERE customer_id > "
        f"{'%s' if dialect == 'postgresql' else '?'} "
        f"ORDER BY customer_id LIMIT {RENUMBER_CUSTOMERS}"
    )
    after = -1
    while ids := [found for (found,) in connection.exec_driver_sql(page, (after,))]:
        connection.execute(statement, {"customers": ids})
        after = ids[-1]
    connection.exec_driver_sql(f"DROP TABLE {_TO_RENUMBER}")
    target.renumber_table = False
