"""PostgreSQL: a file's new orders wait in a temporary table and go into `orders` once, at the
file's end, each with its final order_seq.

Written batch by batch, an order arriving out of payment order was inserted with order_seq 0
and rewritten by the renumbering UPDATE: a new row version with five index entries and a
foreign-key check. On a random-order export of 150,000 orders those UPDATEs were 3.1 s of the
server's time against 2.6 s for the COPY itself (pg_stat_statements over python -m
bench.imports). Staged, each new order is written to `orders` once; only the existing orders
that an earlier new one displaces are renumbered (none on a first import).

The staging table has the orders' columns, and `id`: the row's place among the file's new
orders, which decides a tie in payment time as the file order did when batches were inserted
one by one. Its index on order_no answers the next batches' lookups: an order_no repeated
later in the file is known (updated or unchanged), as it was when the first one was already
in `orders`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Table

from siyu.importer.batch import Target, insert_rows, rows_where, update_rows
from siyu.storage.models import Order

_ORDERS: Table = Order.__table__  # type: ignore[assignment]
COLUMNS = ("order_no", "customer_id", "paid_at", "amount", "category", "store")
_NAME = "siyu_import_orders"
_STAGED = Table(
    _NAME,
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    *(Column(name, _ORDERS.c[name].type) for name in COLUMNS),
)
_LIST = ", ".join(COLUMNS)


def staged(target: Target, keys: list[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    """order_no → (staging id, its other columns) for the `keys` an earlier batch staged."""
    if not target.staged or not keys:
        return {}
    found = rows_where(
        target.session, _STAGED.c.order_no, keys, *(_STAGED.c[name] for name in ("id", *COLUMNS))
    )
    names = COLUMNS[1:]
    return {row[1]: (row[0], dict(zip(names, row[2:], strict=True))) for row in found}


def stage(target: Target, rows: list[dict[str, Any]]) -> None:
    """New orders (their columns) into the staging table, in the file's order."""
    if not rows:
        return
    connection = target.session.connection()
    if not target.staged:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {_NAME}")  # one left by another import
        connection.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {_NAME} ON COMMIT DROP AS "
            f"SELECT 0::bigint AS id, {_LIST} FROM orders WITH NO DATA"
        )
        connection.exec_driver_sql(f"CREATE INDEX ON {_NAME} (order_no)")
    numbered = []
    for row in rows:
        target.staged += 1
        numbered.append({"id": target.staged, **{name: row[name] for name in COLUMNS}})
    insert_rows(target.session, _STAGED, numbered)


def restage(target: Target, rows: list[dict[str, Any]]) -> None:
    """Staged orders that a later row of the file changed (by staging id)."""
    update_rows(target.session, _STAGED, rows)


# Customers with an existing order paid after one of their new ones: its order_seq moves up.
_DISPLACED = f"""
SELECT DISTINCT s.customer_id FROM {_NAME} s
JOIN (
    SELECT customer_id, max(paid_at) AS last FROM orders
    WHERE customer_id IN (SELECT customer_id FROM {_NAME}) GROUP BY customer_id
) e ON e.customer_id = s.customer_id
WHERE s.paid_at < e.last
"""

# Each new order's order_seq is its place among the customer's orders by (paid_at, id): the
# existing ones (a tie goes to them, their ids are lower) then the new ones. Ids are taken in
# payment order (then file order), as the window numbers them.
_INSERT = f"""
WITH staged AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.customer_id ORDER BY s.paid_at, s.id) AS rank
    FROM {_NAME} s
), existing AS (
    SELECT customer_id, count(*) AS n, max(paid_at) AS last FROM orders
    WHERE customer_id IN (SELECT customer_id FROM {_NAME}) GROUP BY customer_id
)
INSERT INTO orders ({_LIST}, order_seq)
SELECT {", ".join(f"s.{name}" for name in COLUMNS)},
    s.rank + CASE
        WHEN e.last IS NULL THEN 0
        WHEN s.paid_at >= e.last THEN e.n
        ELSE (SELECT count(*) FROM orders o
              WHERE o.customer_id = s.customer_id AND o.paid_at <= s.paid_at)
    END
FROM staged s LEFT JOIN existing e ON e.customer_id = s.customer_id
ORDER BY s.paid_at, s.id
"""


def insert_staged(target: Target) -> set[int]:
    """The staged orders into `orders`, numbered; returns the customers whose existing orders
    they displace (to renumber)."""
    if not target.staged:
        return set()
    connection = target.session.connection()
    displaced = {customer for (customer,) in connection.exec_driver_sql(_DISPLACED)}
    connection.exec_driver_sql(_INSERT)
    connection.exec_driver_sql(f"DROP TABLE {_NAME}")
    target.staged = 0
    return displaced
