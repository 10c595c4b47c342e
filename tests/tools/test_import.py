"""CSV import: good rows load, bad rows are named by line and reason (PII masked), a header
mistake names the column and the closest one, and a re-import updates instead of duplicating."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.errors import ConfigError
from siyu.importer.csv_import import import_csv
from siyu.importer.mapping import load_mapping
from siyu.storage.models import ChannelIdentity, Consent, Customer, Event, Order

MAPPING = """\
customers:
  columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, consent: 营销同意, city: 城市}
orders:
  columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额,
            category: 品类}
  date_format: "%Y/%m/%d %H:%M"
  timezone: Asia/Shanghai
events:
  columns: {external_id: 事件ID, customer: 会员编号, name: 事件, occurred_at: 时间,
            properties: 属性}
"""
CUSTOMERS = """\
会员编号,姓名,手机号,营销同意,城市
C001,王小明,13812345678,是,上海
C002,李雷,13900001111,否,杭州
C003,韩梅梅,13812345678,是,北京
C004,,13700002222,是,北京
C005,张伟,13600003333,也许,成都
"""
ORDERS = """\
订单号,会员编号,支付时间,实付金额,品类
O2,C001,2026/09/05 10:00,99.00,护肤
O1,C001,2026/09/01 10:00,"1,299.00",彩妆
O3,C404,2026/09/02 10:00,10,护肤
O4,C002,2026-09-02,10,护肤
O5,C002,2026/09/03 21:30,abc,护肤
"""
EVENTS = """\
事件ID,会员编号,事件,时间,属性
E1,C001,browse,2026-09-01T10:00:00+08:00,"{""sku"": ""A1""}"
E2,C001,brose,2026-09-01T11:00:00,{}
E3,C002,coupon_claimed,2026-09-01T12:00:00,[1]
"""


def run(sessions: sessionmaker[Session], tmp: Path, kind: str, text: str) -> list[str]:
    (tmp / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp / f"{kind}.csv").write_text(text, encoding="utf-8")
    with sessions() as session, session.begin():
        result = import_csv(session, tmp / f"{kind}.csv", load_mapping(tmp / "m.yaml", kind))
    return [line.removeprefix(f"{tmp}/") for line in result.report()]


def count(sessions: sessionmaker[Session], model: type) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_customers_good_rows_load_and_bad_rows_are_reported(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    bad = run(sessions, tmp_path, "customers", CUSTOMERS)
    assert bad == [
        "customers.csv:4: mobile 138****5678 already belongs to another customer",
        "customers.csv:5: empty 姓名",
        "customers.csv:6: 营销同意: '也许' is not a yes/no (是/否, 1/0, yes/no)",
    ]
    assert count(sessions, Customer) == 2
    with sessions() as session:
        consents = dict(
            session.execute(select(Consent.customer_id, Consent.granted)).tuples().all()
        )
        assert sorted(consents.values()) == [False, True]


def test_reimport_updates_instead_of_duplicating(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    run(sessions, tmp_path, "customers", CUSTOMERS)
    changed = CUSTOMERS.replace("王小明,13812345678,是,上海", "王小明,13812345670,否,南京")
    run(sessions, tmp_path, "customers", changed)
    run(sessions, tmp_path, "orders", ORDERS)
    run(sessions, tmp_path, "orders", ORDERS)
    # C003's mobile is free now that C001 changed theirs: it loads this time
    assert (count(sessions, Customer), count(sessions, Order)) == (3, 2)
    with sessions() as session:
        city, granted = session.execute(
            select(Customer.city, Consent.granted)
            .join(Consent, Consent.customer_id == Customer.id)
            .where(Customer.external_id == "C001")
        ).one()
        mobiles = session.scalars(
            select(ChannelIdentity.value).where(ChannelIdentity.kind == "mobile")
        ).all()
    assert (city, granted) == ("南京", False)
    assert sorted(mobiles) == ["13812345670", "13812345678", "13900001111"]


def test_orders_get_their_sequence_and_bad_rows_their_reason(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    run(sessions, tmp_path, "customers", CUSTOMERS)
    bad = run(sessions, tmp_path, "orders", ORDERS)
    assert bad == [
        "orders.csv:4: unknown customer 'C***': import customers first",
        "orders.csv:5: 支付时间: '2026-09-02' is not a date/time in the format %Y/%m/%d %H:%M",
        "orders.csv:6: 实付金额: 'abc' is not an amount (e.g. 199.00)",
    ]
    with sessions() as session:
        rows = session.execute(select(Order.order_no, Order.order_seq, Order.amount)).all()
    assert sorted((r[0], r[1], str(r[2])) for r in rows) == [
        ("O1", 1, "1299.00"),
        ("O2", 2, "99.00"),
    ]


def test_events_unknown_name_and_bad_json(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    run(sessions, tmp_path, "customers", CUSTOMERS)
    bad = run(sessions, tmp_path, "events", EVENTS)
    assert bad[0].startswith("events.csv:3: 事件: unknown event 'brose' — did you mean 'browse'?")
    assert bad[1] == 'events.csv:4: 属性: expected a JSON object like {"sku": "A1"}'
    assert count(sessions, Event) == 1
    assert run(sessions, tmp_path, "events", EVENTS)[:0] == [] and count(sessions, Event) == 1


def test_header_mistake_names_the_column_and_the_closest(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "c.csv").write_text("会员编码,姓名\nC1,王\n", encoding="utf-8")
    mapping = load_mapping(tmp_path / "m.yaml", "customers")
    with (
        pytest.raises(
            ConfigError, match=r"c.csv:1: column '会员编号' \(for external_id\)"
        ) as error,
        sessions() as session,
    ):
        import_csv(session, tmp_path / "c.csv", mapping)
    assert "did you mean '会员编码'" in str(error.value)


def test_mapping_field_typo_is_explained(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "orders:\n  columns: {order_no: a, customer: b, paid_at: c, amount: d, categroy: e}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="did you mean 'category'"):
        load_mapping(tmp_path / "m.yaml", "orders")


def test_the_command_prints_bad_rows_and_exits_2(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "c.csv").write_text(CUSTOMERS, encoding="utf-8")
    url = str(sessions.kw["bind"].url)
    result = CliRunner().invoke(
        app,
        ["import", "customers", str(tmp_path / "c.csv"), "--mapping", str(tmp_path / "m.yaml")],
        env={"SIYU_DATABASE_URL": url},
    )
    assert result.exit_code == 2, result.output
    assert "c.csv:4: mobile 138****5678 already belongs" in result.output
    assert "13812345678" not in result.output
    assert "5 rows read, 2 added, 0 updated, 0 unchanged, 3 bad" in result.output


def test_every_bad_row_is_reported_without_holding_them_all_in_memory(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong date_format makes every row of a file bad: past the first few, the bad rows
    wait in a temporary file, and every one is still reported, in file order, with all of
    its problems."""
    from siyu.importer.csv_import import BadRows

    monkeypatch.setattr(BadRows, "KEPT", 3)
    run(sessions, tmp_path, "customers", CUSTOMERS)
    rows = "".join(f"O{n},C404,2026-09-01 10:00,x{n},护肤\n" for n in range(10))
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    (tmp_path / "o.csv").write_text(ORDERS.splitlines()[0] + "\n" + rows, encoding="utf-8")
    with sessions() as session, session.begin():
        result = import_csv(
            session, tmp_path / "o.csv", load_mapping(tmp_path / "m.yaml", "orders")
        )
    assert len(result.bad) == 10 and len(result.bad.kept) == 3
    report = list(result.report())
    assert [line.split(": ")[0] for line in report] == [
        f"{tmp_path}/o.csv:{n}" for n in range(2, 12)
    ]
    assert all(
        "支付时间: '2026-09-01 10:00' is not a date/time" in line
        and "is not an amount" in line
        and "unknown customer 'C***'" in line
        for line in report
    ), report[-1]
    assert list(result.report(4)) == report[:4]
    assert list(result.report()) == report  # read again: the same
    assert count(sessions, Order) == 0
