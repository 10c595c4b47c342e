"""`current_date` in a journey's SQL is the date of the tick's `now` in the journey's time
zone, whatever the machine's clock or the database's session says: in a step's `if:`, in an
entry's `where:` (through the cached event sources, one per date) and in `siyu preview`.
Runs on SQLite, and on PostgreSQL when SIYU_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.event_sources import filtered_source
from siyu.engine.tick import run_tick
from siyu.language.spec import EventFilter
from siyu.language.where_clause import check_where, tick_date, to_dialect
from siyu.preview.render_preview import preview_customer
from siyu.storage.models import Customer, Delivery, Enrollment, Order
from tests.conftest import Shop, local
from tests.journey_files import write_journey
from tests.recording_channel import RecordingChannel
from tests.test_language_semantics import ctx_for

# 17:00 UTC on 3 November is 01:00 on the 4th in Shanghai: the two dates differ.
EDGE = datetime(2026, 11, 3, 17, 0, tzinfo=UTC)


def test_the_date_is_the_ticks_in_the_journeys_zone() -> None:
    assert tick_date(EDGE, "Asia/Shanghai") == date(2026, 11, 4)
    assert tick_date(EDGE, "UTC") == date(2026, 11, 3)
    assert tick_date(EDGE - timedelta(minutes=1), "Asia/Shanghai") == date(2026, 11, 4)
    assert tick_date(datetime(2026, 11, 3, 15, 59, tzinfo=UTC), "Asia/Shanghai") == date(
        2026, 11, 3
    )


def test_current_date_is_printed_as_the_databases_own_type() -> None:
    day = date(2026, 11, 4)
    sql = "birthday = current_date OR birthday IS NULL"
    assert to_dialect(sql, "sqlite", day) == "birthday = '2026-11-04' OR birthday IS NULL"
    assert (
        to_dialect(sql, "postgresql", day)
        == "birthday = CAST('2026-11-04' AS DATE) OR birthday IS NULL"
    )
    assert to_dialect("city = '上海'", "sqlite", None) == "city = '上海'"
    with pytest.raises(ValueError, match="current_date"):
        to_dialect(sql, "sqlite", None)


def test_validation_accepts_current_date_but_not_a_zone_of_its_own() -> None:
    assert check_where("birthday < current_date", ("birthday",)) == []
    problems = check_where("birthday < current_date('UTC')", ("birthday",))
    assert [p.message for p in problems] == [
        "current_date takes no time zone: it is the tick's date in the journey's timezone"
    ]


def test_event_sources_are_cached_per_date_only_when_their_where_uses_it(
    sessions: sessionmaker[Session],
) -> None:
    dated = EventFilter(event="order_paid", where="date(occurred_at) = current_date")
    plain = EventFilter(event="order_paid", where="order_seq = 1")
    day, next_day = date(2026, 11, 4), date(2026, 11, 5)
    with sessions() as session:
        assert filtered_source(session, plain, day) is filtered_source(session, plain, next_day)
        assert filtered_source(session, dated, day) is filtered_source(session, dated, day)
        assert filtered_source(session, dated, day) is not filtered_source(session, dated, next_day)


def _set_birthday(sessions: sessionmaker[Session], customer_id: int, birthday: date) -> None:
    with sessions() as session, session.begin():
        session.execute(
            update(Customer).where(Customer.id == customer_id).values(birthday=birthday)
        )


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC"])
def test_a_step_condition_sees_the_ticks_date_in_the_journeys_zone(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
    zone: str,
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        f"journey: birthday-today\ntimezone: {zone}\nquiet_hours: null\n"
        "entry: {event: order_paid}\n"
        "steps:\n"
        "  - {id: greet, send: sms, template: hello.j2,\n"
        '     if: {customer: "birthday = current_date"}}\n',
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    shanghai_today, utc_today = shop.customer("沪"), shop.customer("格")
    _set_birthday(sessions, shanghai_today, date(2026, 11, 4))
    _set_birthday(sessions, utc_today, date(2026, 11, 3))
    run_tick(ctx, spec, EDGE - timedelta(hours=1))  # switched on
    for buyer in (shanghai_today, utc_today):
        shop.order(buyer, EDGE - timedelta(minutes=30), seq=1)
    run_tick(ctx, spec, EDGE)
    with sessions() as session:
        found = dict(session.execute(select(Delivery.customer_id, Delivery.status)).tuples().all())
    greeted = shanghai_today if zone == "Asia/Shanghai" else utc_today
    other = utc_today if greeted == shanghai_today else shanghai_today
    assert (found[greeted], found[other]) == ("sent", "skipped")


def test_an_entry_where_sees_each_ticks_own_date(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    """`date(occurred_at)` is the stored (UTC) date of the order; `current_date` is the
    tick's date in Shanghai. One tick a day: each sees its own day, not the last one's."""
    spec = write_journey(
        tmp_path,
        channels,
        "journey: paid-today\ntimezone: Asia/Shanghai\nquiet_hours: null\n"
        'entry: {event: order_paid, where: "date(occurred_at) = current_date"}\n'
        "steps:\n  - {id: thanks, send: sms, template: hello.j2}\n",
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    late, fourth, fifth = shop.customer("晚"), shop.customer("四"), shop.customer("五")
    run_tick(ctx, spec, local(0))  # switched on before every order
    shop.order(late, EDGE - timedelta(minutes=30), seq=1)  # stored date 3 Nov
    shop.order(fourth, datetime(2026, 11, 4, 9, tzinfo=UTC), seq=1)
    shop.order(fifth, datetime(2026, 11, 5, 9, tzinfo=UTC), seq=1)

    def entered() -> set[int]:
        with sessions() as session:
            return set(session.scalars(select(Enrollment.customer_id)))

    run_tick(ctx, spec, EDGE)  # the 4th in Shanghai: 'late' paid on the 3rd (UTC)
    assert entered() == set()
    run_tick(ctx, spec, datetime(2026, 11, 4, 10, tzinfo=UTC))
    assert entered() == {fourth}
    run_tick(ctx, spec, datetime(2026, 11, 5, 10, tzinfo=UTC))
    assert entered() == {fourth, fifth}


def test_preview_picks_the_entry_event_matching_on_its_now(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "order.j2").write_text("订单 {{ event.order_no }}", "utf-8")
    spec = write_journey(
        tmp_path,
        channels,
        "journey: paid-today\ntimezone: Asia/Shanghai\nquiet_hours: null\n"
        'entry: {event: order_paid, where: "date(occurred_at) = current_date"}\n'
        "steps:\n  - {id: thanks, send: sms, template: order.j2}\n",
    )
    buyer = shop.customer()
    days = (datetime(2026, 11, 4, 9, tzinfo=UTC), datetime(2026, 11, 5, 9, tzinfo=UTC))
    for seq, paid in enumerate(days, start=1):
        shop.order(buyer, paid, seq=seq)
    with sessions() as session:
        numbers = list(session.scalars(select(Order.order_no).order_by(Order.paid_at)))
        for paid, number in zip(days, numbers, strict=True):
            shown = preview_customer(
                session,
                spec,
                spec.steps[0],
                tmp_path / "templates",
                str(buyer),
                paid + timedelta(hours=3),
            )
            assert shown.body == f"订单 {number}"
