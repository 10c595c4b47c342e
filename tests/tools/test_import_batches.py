"""An import writes rows in batches (siyu/importer/batch.py) but must give what a row-by-row
import gives: every row checked against the database as the rows before it in the file left
it, whichever batch they fell in. Each case runs with batches of 2 rows and of 2,000 (the
whole file), and the outcomes must be the same. Runs on SQLite, and on PostgreSQL when
SIYU_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.importer import csv_import
from siyu.importer.csv_import import import_csv
from siyu.importer.mapping import load_mapping
from siyu.storage.models import ChannelIdentity, Consent, Customer, Event, Order

MAPPING = """\
customers:
  columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, consent: 营销同意, city: 城市}
orders:
  columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额}
  date_format: "%Y/%m/%d %H:%M"
events:
  columns: {external_id: 事件ID, customer: 会员编号, name: 事件, occurred_at: 时间}
"""
CUSTOMERS = """\
会员编号,姓名,手机号,营销同意,城市
C1,甲,13800000001,是,上海
C2,乙,13800000002,否,杭州
C1,甲,13800000009,否,南京
C3,丙,13800000001,是,北京
C4,丁,13800000002,是,成都
C5,戊,13800000005,也许,
"""
# C1 appears twice (the second row updates the first and gives C1 a new mobile); C3 takes the
# mobile C1 released; C4 wants C2's mobile (refused); C5's consent is not a yes/no.


def load(
    sessions: sessionmaker[Session], tmp: Path, kind: str, body: str
) -> tuple[list[str], tuple[int, int, int, int]]:
    (tmp / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp / f"{kind}.csv").write_text(body, encoding="utf-8")
    with sessions() as session, session.begin():
        result = import_csv(session, tmp / f"{kind}.csv", load_mapping(tmp / "m.yaml", kind))
    bad = [line.removeprefix(f"{tmp}/") for line in result.report()]
    return bad, (result.rows, result.inserted, result.updated, result.unchanged)


def snapshot(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        ids = dict(session.execute(select(Customer.id, Customer.external_id)).tuples().all())
        return {
            "customers": sorted(
                session.execute(select(Customer.external_id, Customer.name, Customer.city)).all()
            ),
            "mobiles": sorted(
                (ids[c], v)
                for c, v in session.execute(
                    select(ChannelIdentity.customer_id, ChannelIdentity.value)
                ).all()
            ),
            "consents": sorted(
                (ids[c], g)
                for c, g in session.execute(select(Consent.customer_id, Consent.granted)).all()
            ),
            "orders": sorted(
                (o, ids[c], s, str(a))
                for o, c, s, a in session.execute(
                    select(Order.order_no, Order.customer_id, Order.order_seq, Order.amount)
                ).all()
            ),
            "events": sorted(
                (e, ids[c], n)
                for e, c, n in session.execute(
                    select(Event.external_id, Event.customer_id, Event.name)
                ).all()
            ),
        }


@pytest.fixture(params=[2, 2000], ids=["batches-of-2", "one-batch"])
def batch_rows(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(csv_import, "BATCH_ROWS", request.param)
    return int(request.param)


def test_customers_are_checked_in_file_order_across_batches(
    sessions: sessionmaker[Session], tmp_path: Path, batch_rows: int
) -> None:
    bad, counts = load(sessions, tmp_path, "customers", CUSTOMERS)
    assert bad == [
        "customers.csv:6: mobile 138****0002 already belongs to another customer",
        "customers.csv:7: 营销同意: '也许' is not a yes/no (是/否, 1/0, yes/no)",
    ]
    assert counts == (6, 3, 1, 0)  # C1, C2, C3 added; C1 updated by its second row
    state = snapshot(sessions)
    assert [(e, n, c) for e, n, c in state["customers"]] == [
        ("C1", "甲", "南京"),
        ("C2", "乙", "杭州"),
        ("C3", "丙", "北京"),
    ]
    by_id = {v: c for c, v in state["mobiles"]}
    assert sorted(by_id) == ["13800000001", "13800000002", "13800000009"]
    assert by_id["13800000009"] != by_id["13800000001"]  # C1 moved, C3 took the old one
    assert sorted(g for _, g in state["consents"]) == [False, False, True]


def test_orders_keep_their_sequence_and_a_repeated_order_updates(
    sessions: sessionmaker[Session], tmp_path: Path, batch_rows: int
) -> None:
    load(sessions, tmp_path, "customers", CUSTOMERS)
    orders = (
        "订单号,会员编号,支付时间,实付金额\n"
        "O3,C1,2026/09/03 10:00,30\n"
        "O1,C1,2026/09/01 10:00,10\n"
        "O9,C404,2026/09/01 10:00,10\n"
        "O2,C2,2026/09/02 10:00,20\n"
        "O1,C1,2026/09/04 10:00,11\n"  # O1 again: re-timed after O3
        "O4,C2,2026/09/01 09:00,5\n"
    )
    bad, counts = load(sessions, tmp_path, "orders", orders)
    assert bad == ["orders.csv:4: unknown customer 'C***': import customers first"]
    assert counts == (6, 4, 1, 0)
    state = snapshot(sessions)
    seq = {o: s for o, _, s, _ in state["orders"]}
    assert seq == {"O3": 1, "O1": 2, "O4": 1, "O2": 2}
    assert {o: a for o, _, _, a in state["orders"]}["O1"] == "11.00"
    # a late import of an older order renumbers; the same file again changes nothing
    bad, counts = load(
        sessions,
        tmp_path,
        "orders",
        "订单号,会员编号,支付时间,实付金额\nO0,C1,2026/08/01 10:00,1\n",
    )
    assert counts == (1, 1, 0, 0)
    seq = {o: s for o, _, s, _ in snapshot(sessions)["orders"]}
    assert seq == {"O0": 1, "O3": 2, "O1": 3, "O4": 1, "O2": 2}
    before = snapshot(sessions)
    bad, counts = load(sessions, tmp_path, "orders", orders)
    assert counts == (6, 0, 2, 3)  # O1 changed twice (line 3, then back at line 6)
    assert snapshot(sessions) == before


def test_an_order_moved_to_another_customer_renumbers_both(
    sessions: sessionmaker[Session], tmp_path: Path, batch_rows: int
) -> None:
    load(sessions, tmp_path, "customers", CUSTOMERS)
    head = "订单号,会员编号,支付时间,实付金额\n"
    load(
        sessions,
        tmp_path,
        "orders",
        head + "O1,C1,2026/09/01 10:00,1\nO2,C1,2026/09/02 10:00,2\nO3,C2,2026/09/03 10:00,3\n",
    )
    load(sessions, tmp_path, "orders", head + "O1,C2,2026/09/01 10:00,1\n")
    state = snapshot(sessions)
    by_order = {o: s for o, _, s, _ in state["orders"]}
    assert by_order == {"O2": 1, "O1": 1, "O3": 2}


def test_events_update_on_their_external_id(
    sessions: sessionmaker[Session], tmp_path: Path, batch_rows: int
) -> None:
    load(sessions, tmp_path, "customers", CUSTOMERS)
    events = (
        "事件ID,会员编号,事件,时间\n"
        "E1,C1,browse,2026-09-01T10:00:00+08:00\n"
        "E2,C2,browse,2026-09-01T11:00:00+08:00\n"
        "E1,C2,coupon_claimed,2026-09-01T12:00:00+08:00\n"
    )
    bad, counts = load(sessions, tmp_path, "events", events)
    assert (bad, counts) == ([], (3, 2, 1, 0))
    names = {e: n for e, _, n in snapshot(sessions)["events"]}
    assert names == {"E1": "coupon_claimed", "E2": "browse"}
    assert load(sessions, tmp_path, "events", events)[1] == (3, 0, 2, 1)  # E1 twice again


def test_the_same_customers_again_are_unchanged_and_a_changed_consent_is_not(
    sessions: sessionmaker[Session], tmp_path: Path, batch_rows: int
) -> None:
    good = CUSTOMERS.replace("C4,丁,13800000002,是,成都\n", "").replace(
        "C5,戊,13800000005,也许,\n", ""
    )
    load(sessions, tmp_path, "customers", good)
    again = load(sessions, tmp_path, "customers", good)
    # C1's first row now names the mobile C3 took from C1: refused, as any row would be
    assert again == (
        ["customers.csv:2: mobile 138****0001 already belongs to another customer"],
        (4, 0, 0, 3),
    )
    consent = good.replace("C2,乙,13800000002,否", "C2,乙,13800000002,是")
    assert load(sessions, tmp_path, "customers", consent)[1] == (4, 0, 1, 2)


def test_orders_in_time_order_are_numbered_as_they_are_inserted(
    sessions: sessionmaker[Session], tmp_path: Path, batch_rows: int
) -> None:
    """A CRM export in payment order: each new order gets its final order_seq at insert, and
    the renumbering at the end changes no row (an UPDATE of every fresh order was the
    dearest part of a PostgreSQL import); an older order arriving later is renumbered."""
    from sqlalchemy import event

    load(sessions, tmp_path, "customers", CUSTOMERS)
    head = "订单号,会员编号,支付时间,实付金额\n"
    sorted_orders = head + "".join(
        f"O{n},{'C1' if n % 3 else 'C2'},2026/09/{n + 1:02d} 10:00,{n}\n" for n in range(9)
    )
    engine = sessions.kw["bind"]
    renumbered: list[int] = []

    def count(_c: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE ORDERS"):
            renumbered.append(cursor.rowcount)

    event.listen(engine, "after_cursor_execute", count)
    try:
        load(sessions, tmp_path, "orders", sorted_orders)
        assert renumbered == []  # in payment order: no customer needs renumbering at all
        renumbered.clear()
        load(sessions, tmp_path, "orders", head + "O9,C1,2026/08/01 10:00,1\n")  # older
    finally:
        event.remove(engine, "after_cursor_execute", count)
    # C1's six orders move up one; the old one becomes 1, written so at its insert on
    # PostgreSQL (staged_orders.py), renumbered from 0 on SQLite
    postgresql = engine.dialect.name == "postgresql"
    assert sum(renumbered) == (6 if postgresql else 7)
    seq = {o: s for o, _, s, _ in snapshot(sessions)["orders"]}
    assert seq == {
        "O9": 1, "O1": 2, "O2": 3, "O4": 4, "O5": 5, "O7": 6, "O8": 7,
        "O0": 1, "O3": 2, "O6": 3,
    }  # fmt: skip


def test_random_order_with_repeats_numbers_as_from_scratch(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    batch_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A random-order file over customers with orders before and after the new ones, order
    numbers repeated across batches (identical or changed) and unknown customers: every
    order_seq is what numbering each customer's orders by (paid_at, id) from scratch gives,
    after the import and after the same file again, and each row's outcome is a row-by-row
    import's. On PostgreSQL the new orders go through the staging table (staged_orders.py)."""
    import random
    from datetime import datetime, timedelta

    people = "".join(f"K{n},人{n},1390000000{n},是,上海\n" for n in range(1, 7))
    load(sessions, tmp_path, "customers", "会员编号,姓名,手机号,营销同意,城市\n" + people)
    rng = random.Random(17)
    start = datetime(2026, 9, 1)
    head = "订单号,会员编号,支付时间,实付金额\n"

    def line(order: str, customer: str, hour: int, amount: int) -> str:
        return f"{order},{customer},{(start + timedelta(hours=hour)):%Y/%m/%d %H:%M},{amount}\n"

    # existing orders of K1..K4, spread over the same hours as the new ones
    existing = [(f"E{n}", f"K{1 + n % 4}", rng.randrange(60), 5) for n in range(16)]
    load(sessions, tmp_path, "orders", head + "".join(line(*o) for o in existing))
    # existing orders come back unchanged: only the new ones decide who is renumbered
    rows = [existing[n] for n in (3, 0, 2)]
    for _ in range(70):
        customer = "K404" if rng.random() < 0.05 else f"K{rng.randrange(1, 7)}"
        rows.append((f"N{rng.randrange(30)}", customer, rng.randrange(60), rng.choice((5, 6))))
    # then later orders (most after every customer's last, some tied with it, a few before)
    later = [(f"L{n}", f"K{rng.randrange(1, 7)}", rng.randrange(45, 80), 7) for n in range(30)]
    seen: list[str | None] = []
    real = csv_import.LOADERS["orders"][0]

    def recording(target: Any, batch: list[Any]) -> list[str | None]:
        outcomes = real(target, batch)
        seen.extend(outcomes)
        return outcomes

    monkeypatch.setitem(csv_import.LOADERS, "orders", (recording, "order_no"))
    state = {o: (c, h, a) for o, c, h, a in existing}
    for attempt, file in (("first", rows), ("again", rows), ("later", later)):
        expected: list[str | None] = []
        for order, customer, hour, amount in file:
            if customer == "K404":
                expected.append(None)
                continue
            before = state.get(order)
            state[order] = (customer, hour, amount)
            expected.append(
                "inserted"
                if before is None
                else "unchanged"
                if before == state[order]
                else "updated"
            )
        seen.clear()
        load(sessions, tmp_path, "orders", head + "".join(line(*row) for row in file))
        assert seen == expected, attempt
        with sessions() as session:
            ids = dict(session.execute(select(Customer.id, Customer.external_id)).tuples().all())
            found = session.execute(
                select(Order.id, Order.order_no, Order.customer_id, Order.paid_at, Order.order_seq)
            ).all()
        assert {o: ids[c] for _, o, c, _, _ in found} == {o: c for o, (c, _, _) in state.items()}
        scratch: dict[int, int] = {}
        by_customer: dict[int, list[tuple[Any, int]]] = {}
        for order_id, _, customer_id, paid_at, _ in found:
            by_customer.setdefault(customer_id, []).append((paid_at, order_id))
        for orders in by_customer.values():
            for place, (_, order_id) in enumerate(sorted(orders), start=1):
                scratch[order_id] = place
        assert {i: s for i, _, _, _, s in found} == scratch, attempt
