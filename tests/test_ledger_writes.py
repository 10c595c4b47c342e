"""The send step's hot writes, run below SQLAlchemy's ORM for speed, must store exactly what
the ORM would: the driver-level multi-row insert (siyu/storage/bulk.py), receipts grouped into one
UPDATE per set of values (siyu/engine/receipts.py), and entry events found by primary key
(siyu/storage/sources.py). Runs on SQLite, and on PostgreSQL under `.ci/run`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session, sessionmaker

import siyu.storage.bulk
from siyu.engine.claims import DELIVERIES, ENROLLMENTS
from siyu.engine.receipts import record_receipts
from siyu.storage.bulk import insert_returning, prepare_insert
from siyu.storage.models import Delivery, Enrollment, Journey, Order
from siyu.storage.sources import SOURCES
from tests.conftest import DAY0, Shop

NOW = DAY0 + timedelta(days=3, hours=2, microseconds=123456)


def _enrollments(sessions: sessionmaker[Session], count: int) -> list[tuple[int, int]]:
    """(enrollment id, customer id) of `count` fresh enrollments."""
    shop = Shop(sessions)
    customers = [shop.customer(identities=()) for _ in range(count)]
    with sessions() as session, session.begin():
        journey = Journey(
            name="j", version=1, spec_hash="h", spec={}, activated_at=DAY0, created_at=DAY0
        )
        session.add(journey)
        session.flush()
        rows = [
            Enrollment(
                journey_id=journey.id,
                journey_name="j",
                customer_id=c,
                entry_key=f"order:{c}",
                entered_at=DAY0,
                enrolled_at=DAY0,
            )
            for c in customers
        ]
        session.add_all(rows)
        session.flush()
        return [(r.id, r.customer_id) for r in rows]


def _delivery(enrollment_id: int, customer_id: int, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(
        enrollment_id=enrollment_id,
        journey_name="j",
        step_id="s",
        customer_id=customer_id,
        channel="sms",
        purpose="marketing",
        idempotency_key=f"key-{enrollment_id}",
        due_at=NOW - timedelta(hours=1),
        created_at=NOW,
        status="sending",
        reason_code=None,
        reason_detail=None,
        updated_at=NOW,
        attempts=1,
        next_attempt_at=NOW + timedelta(minutes=10),
        content="您好，王小明",
        address="13800000000",
    )
    row.update(values)
    return row


def _stored(session: Session) -> list[tuple[Any, ...]]:
    """The rows as the database holds them (raw SQL: on SQLite, the stored text)."""
    names = ", ".join(c.name for c in DELIVERIES.columns if c.name != "id")
    query = text(f"SELECT {names} FROM deliveries ORDER BY enrollment_id")
    return [tuple(row) for row in session.execute(query)]


def test_the_driver_insert_stores_what_sqlalchemy_stores(
    sessions: sessionmaker[Session],
) -> None:
    """Same rows, one half through SQLAlchemy's insert and one through siyu.storage.bulk: read back,
    every column (timestamps, NULLs, Chinese text) is equal."""
    enrollments = _enrollments(sessions, 4)
    rows = [_delivery(e, c, due_at=NOW - timedelta(days=e)) for e, c in enrollments]
    with sessions() as session, session.begin():
        session.execute(insert(DELIVERIES), rows[:2])
        insert_returning(session.connection(), DELIVERIES, rows[2:], ("id",))
    with sessions() as session:
        stored = _stored(session)
    blank = {"enrollment_id", "customer_id", "idempotency_key", "due_at"}
    names = [c.name for c in DELIVERIES.columns if c.name != "id"]
    by_orm = [{n: v for n, v in zip(names, r, strict=True) if n not in blank} for r in stored[:2]]
    by_bulk = [{n: v for n, v in zip(names, r, strict=True) if n not in blank} for r in stored[2:]]
    assert by_orm == by_bulk
    assert stored[3][names.index("sent_at")] is None
    with sessions() as session:  # read back through the model: aware UTC, microseconds kept
        delivery = session.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(1)).one()
    assert (delivery.updated_at, delivery.due_at) == (NOW, NOW - timedelta(days=enrollments[3][0]))


def test_the_driver_insert_skips_conflicts_and_returns_only_what_it_inserted(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows another worker inserted first are neither overwritten nor returned; statements
    are paged by parameter count on SQLite (a small page here, so that several pages run;
    PostgreSQL takes them as one statement of column arrays)."""
    monkeypatch.setattr(siyu.storage.bulk, "MAX_PARAMETERS", 40)  # 2 rows a statement
    enrollments = _enrollments(sessions, 7)
    with sessions() as session, session.begin():
        first = insert_returning(
            session.connection(),
            DELIVERIES,
            [_delivery(e, c, content="first") for e, c in enrollments[:3]],
            ("enrollment_id", "id"),
        )
    with sessions() as session, session.begin():
        second = insert_returning(
            session.connection(),
            DELIVERIES,
            [_delivery(e, c, content="second") for e, c in enrollments],
            ("enrollment_id",),
        )
    assert sorted(r[0] for r in first) == [e for e, _ in enrollments[:3]]
    assert sorted(r[0] for r in second) == [e for e, _ in enrollments[3:]]
    with sessions() as session:
        contents = session.execute(
            select(Delivery.enrollment_id, Delivery.content).order_by(Delivery.enrollment_id)
        ).all()
    assert [c for _, c in contents] == ["first"] * 3 + ["second"] * 4


def test_the_driver_insert_fills_python_side_defaults(sessions: sessionmaker[Session]) -> None:
    """A column the rows leave out gets its `mapped_column(default=...)`, as with the ORM."""
    shop = Shop(sessions)
    customer = shop.customer(identities=())
    with sessions() as session, session.begin():
        journey = Journey(
            name="j", version=1, spec_hash="h", spec={}, activated_at=DAY0, created_at=DAY0
        )
        session.add(journey)
        session.flush()
        journey_id = journey.id
    row = dict(
        journey_id=journey_id,
        journey_name="j",
        customer_id=customer,
        entry_key="order:1",
        entered_at=DAY0,
        enrolled_at=DAY0,
    )
    with sessions() as session, session.begin():
        (inserted,) = insert_returning(session.connection(), ENROLLMENTS, [row], ("id",))
    with sessions() as session:
        enrollment = session.get(Enrollment, inserted[0])
        assert enrollment is not None
        assert (enrollment.status, enrollment.holdout) == ("active", False)


def test_receipts_with_the_same_values_share_one_update_and_skip_rows_not_sending(
    sessions: sessionmaker[Session],
) -> None:
    enrollments = _enrollments(sessions, 5)
    with sessions() as session, session.begin():
        ids = [
            r[1]
            for r in insert_returning(
                session.connection(),
                DELIVERIES,
                [_delivery(e, c) for e, c in enrollments],
                ("enrollment_id", "id"),
            )
        ]
    ids.sort()
    with sessions() as session, session.begin():  # another worker recorded this one already
        session.execute(DELIVERIES.update().where(DELIVERIES.c.id == ids[0]).values(status="sent"))
    sent = dict(status="sent", reason_code=None, reason_detail=None, updated_at=NOW)
    sent.update(sent_at=NOW, next_attempt_at=None)
    batch = {**sent, "provider_code": None, "provider_message_id": "biz-1"}
    later = NOW + timedelta(minutes=5)
    retry = {
        **dict(status="deferred", reason_code="retry", reason_detail="Throttling"),
        **dict(updated_at=NOW, sent_at=None),
        **dict(next_attempt_at=later, provider_code="Throttling", provider_message_id=None),
    }
    with sessions() as session, session.begin():
        record_receipts(
            session,
            {
                tuple(batch.items()): [ids[0], ids[1], ids[2]],  # a group of three
                tuple(retry.items()): [ids[3]],  # single rows
                tuple({**batch, "provider_message_id": "biz-2"}.items()): [ids[4]],
            },
        )
    with sessions() as session:
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.status,
                Delivery.provider_message_id,
                Delivery.next_attempt_at,
                Delivery.sent_at,
            ).order_by(Delivery.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        (ids[0], "sent", None, NOW + timedelta(minutes=10), None),  # untouched: not sending
        (ids[1], "sent", "biz-1", None, NOW),
        (ids[2], "sent", "biz-1", None, NOW),
        (ids[3], "deferred", None, later, None),
        (ids[4], "sent", "biz-2", None, NOW),
    ]


def test_entry_event_keys_give_the_primary_keys_of_their_own_source() -> None:
    orders = SOURCES["order_paid"]
    keys = ["order:42", "order:7", "segment:3", "order:", "order:x1", "customer:42"]
    assert orders.key_ids(keys) == [42, 7]
    assert SOURCES["customer_created"].key_ids(keys) == [42]
    assert SOURCES["browse"].key_ids(["event:5", "order:5"]) == [5]


def test_entry_events_by_primary_key_carry_the_event_key(sessions: sessionmaker[Session]) -> None:
    shop = Shop(sessions)
    customer = shop.customer(identities=())
    shop.order(customer, DAY0, seq=1)
    source = SOURCES["order_paid"]
    with sessions() as session:
        order_id = session.scalars(select(Order.id).where(Order.customer_id == customer)).one()
        rows = session.execute(source.select_by_keys(), {"row_ids": [order_id, 10**9]}).all()
    assert [(r.event_key, r.customer_id) for r in rows] == [(f"order:{order_id}", customer)]
    assert rows[0].occurred_at == DAY0


def test_on_postgresql_a_page_of_rows_is_one_short_statement_of_column_arrays() -> None:
    """psycopg parses a statement's placeholders in Python and caches that only for statements
    under 4,096 characters and 50 parameters: 500 ledger rows as VALUES were 11,000
    placeholders, parsed again for every batch (a quarter of the send step's CPU)."""
    from psycopg import _queries
    from sqlalchemy.dialects.postgresql import psycopg as pg

    rows = [_delivery(i, i) for i in range(1, 501)]
    ((sql, params),) = prepare_insert(pg.dialect(), DELIVERIES, rows, ("enrollment_id", "id"))
    assert "unnest(" in sql and len(sql) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(params) <= _queries.MAX_CACHED_STATEMENT_PARAMS
    assert all(len(column) == 500 for column in params)
