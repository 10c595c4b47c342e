"""Builds the benchmark brand fast and in constant memory: rows are generated in chunks and
written with executemany (SQLite) or COPY (PostgreSQL), never held all at once.

Customers 1..N, each with one first order (order id = customer id). The first `due` are
enrolled two days ago (their day-1 message is due now), the next ones were enrolled within
the last day (not due), and the last `entrants` bought half an hour ago and are not enrolled
yet (the next tick enrolls them). Due customers and entrants have a mobile number, a
service-account openid and marketing consent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from siyu.engine.versions import spec_hash, stored_spec
from siyu.language.spec import JourneySpec
from siyu.storage.models import Base

CHUNK = 20_000
CITIES = ("上海", "北京", "杭州", "广州", "深圳", "成都", "武汉", "南京")
LEVELS = ("普通", "银卡", "金卡", "黑金")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂"


@dataclass(frozen=True)
class Shape:
    customers: int
    due: int
    entrants: int
    now: datetime

    def paid_at(self, i: int) -> datetime:
        if i <= self.due:
            return self.now - timedelta(days=2, seconds=i % 3600)
        if i > self.customers - self.entrants:
            return self.now - timedelta(minutes=30, seconds=i % 600)
        return self.now - timedelta(hours=20, seconds=i % 3600)

    def reachable(self, i: int) -> bool:
        return i <= self.due or i > self.customers - self.entrants


def _stamp(value: datetime) -> str:
    # siyu.storage.types.UTCDateTime's storage on SQLite
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _rows(shape: Shape, table: str, start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    created = _stamp(shape.now - timedelta(days=400))
    for i in range(start, stop):
        if table == "customers":
            name = SURNAMES[i % 20] + GIVEN[(i // 20) % len(GIVEN)] + GIVEN[(i // 500) % len(GIVEN)]
            yield (i, f"C{i:09d}", name, CITIES[i % 8], LEVELS[i % 4], "Asia/Shanghai", created)
        elif table == "orders":
            paid = _stamp(shape.paid_at(i))
            yield (i, f"B{i:09d}", i, paid, "199.00", "护肤", 1, "小程序商城")
        elif table == "channel_identities" and shape.reachable(i):
            yield (2 * i - 1, i, "mobile", f"1{3_000_000_000 + i}")
            yield (2 * i, i, "wechat_openid", f"o-bench-{i:012d}")
        elif table == "consents" and shape.reachable(i):
            yield (i, i, "marketing", True, "bench", created)
        elif table == "enrollments" and i <= shape.customers - shape.entrants:
            entered = _stamp(shape.paid_at(i))
            yield (i, 1, "bench", i, f"order:{i}", entered, entered, "active", False)


COLUMNS = {
    "customers": "id, external_id, name, city, member_level, timezone, created_at",
    "orders": "id, order_no, customer_id, paid_at, amount, category, order_seq, store",
    "channel_identities": "id, customer_id, kind, value",
    "consents": "id, customer_id, purpose, granted, source, updated_at",
    "enrollments": (
        "id, journey_id, journey_name, customer_id, entry_key, entered_at, enrolled_at, "
        "status, holdout"
    ),
}


def build(engine: Engine, shape: Shape, spec: JourneySpec, progress: Callable[[str], None]) -> None:
    """Create the schema and fill it (the database must be empty)."""
    Base.metadata.create_all(engine)
    activated = shape.now - timedelta(days=3)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO journeys (id, name, version, spec_hash, spec, activated_at, "
                "enrolled_through, created_at) VALUES (1, :name, :version, :hash, :spec, "
                ":activated, :through, :activated)"
            ),
            dict(
                name=spec.journey,
                version=spec.version,
                hash=spec_hash(spec),
                spec=json.dumps(stored_spec(spec), ensure_ascii=False),
                activated=_stamp(activated),
                through=_stamp(shape.now - timedelta(hours=1)),
            ),
        )
    for table, columns in COLUMNS.items():
        for start in range(1, shape.customers + 1, CHUNK):
            stop = min(start + CHUNK, shape.customers + 1)
            rows = list(_rows(shape, table, start, stop))
            if rows:
                _write(engine, table, columns, rows)
        progress(f"{table} written")
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            for table in ("customers", "orders", "channel_identities", "consents", "enrollments"):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {shape.customers})"
                    )
                )
            connection.execute(text("SELECT setval(pg_get_serial_sequence('journeys', 'id'), 1)"))
            connection.execute(text("ANALYZE"))
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))


def _write(engine: Engine, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(rows[0]))
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        raw.commit()
    finally:
        raw.close()
