"""Segments: every RFM boundary of the source table, evaluated in order with an `other` tier;
lifecycle stages and activity tags; memberships recorded as stays; segments as a journey's
condition and entry; bad segments.yaml and unknown segment names reported with positions."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.language.loader import check_journey_file
from siyu.language.problems import SpecError
from siyu.language.references import Catalog
from siyu.segments.compute import Purchases, lifecycle_stage, refresh_segments, rfm_tier
from siyu.segments.config import SegmentsConfig, load_segments
from siyu.storage.models import Delivery, Enrollment, Event, Order, SegmentMembership
from tests.conftest import Shop, local
from tests.journey_files import write_journey
from tests.recording_channel import RecordingChannel

NOW = local(100, 12)
CONFIG = SegmentsConfig()


def buys(days_ago: int, orders: int, spend: float, first_days_ago: int = 400) -> Purchases:
    return Purchases(
        NOW - timedelta(days=first_days_ago), NOW - timedelta(days=days_ago), orders, spend, orders
    )


@pytest.mark.parametrize(
    ("days", "orders", "spend", "tier"),
    [
        (7, 5, 5000, "rfm-high-value"),
        (8, 5, 5000, "rfm-other"),  # R 8 leaves high value; F 5 is above potential's 2-4
        (7, 4, 5000, "rfm-other"),  # R ≤ 7 with F < 5 fits no tier of the table
        (8, 4, 5000, "rfm-potential"),  # ¥5000 sits in both bands: order decides
        (30, 2, 1000, "rfm-potential"),
        (31, 2, 999, "rfm-active"),
        (30, 2, 999, "rfm-other"),  # R 8-30 with M < 1000: a gap of the table
        (90, 1, 999, "rfm-active"),
        (90, 1, 1000, "rfm-other"),
        (91, 1, 10_000, "rfm-churned"),  # churned: any spend
        (91, 2, 100, "rfm-other"),  # F 2 is not "≤1"
    ],
)
def test_rfm_boundaries_first_match_wins_and_gaps_fall_into_other(
    days: int, orders: int, spend: float, tier: str
) -> None:
    assert rfm_tier(CONFIG, NOW, buys(days, orders, spend)) == tier


def test_a_customer_who_never_bought_is_other() -> None:
    assert rfm_tier(CONFIG, NOW, None) == "rfm-other"


@pytest.mark.parametrize(
    ("days", "orders", "first", "stage"),
    [
        (3, 1, 3, "new"),
        (3, 2, 20, "growing"),
        (3, 5, 40, "mature"),
        (3, 2, 200, "mature"),  # a customer for 180+ days
        (30, 3, 60, "at-risk"),
        (89, 3, 120, "at-risk"),
        (90, 3, 120, "churned"),
    ],
)
def test_lifecycle_stages(days: int, orders: int, first: int, stage: str) -> None:
    assert lifecycle_stage(CONFIG, NOW, buys(days, orders, 100, first)) == stage


def order(sessions: sessionmaker[Session], customer: int, at: datetime, amount: str) -> None:
    with sessions() as session, session.begin():
        n = session.scalar(select(Order.id).order_by(Order.id.desc()).limit(1)) or 0
        session.add(
            Order(
                order_no=f"S{n + 1:08d}-{customer}",
                customer_id=customer,
                paid_at=at,
                amount=Decimal(amount),
                category="护肤",
                order_seq=1,
            )
        )


def test_memberships_are_stays_and_refreshing_twice_changes_nothing(
    sessions: sessionmaker[Session], shop: Shop
) -> None:
    loyal, lapsing, browser = shop.customer("甲"), shop.customer("乙"), shop.customer("丙")
    for i in range(5):
        order(sessions, loyal, local(0, i), "1200")
    order(sessions, lapsing, local(0), "80")
    with sessions() as session, session.begin():
        for hour in range(3):
            session.add(Event(customer_id=browser, name="browse", occurred_at=local(4, hour)))
    with sessions() as session, session.begin():
        first = refresh_segments(session, CONFIG, local(5))
    assert first.members["rfm-high-value"] == 1 and first.members["high-frequency"] == 2
    with sessions() as session, session.begin():
        again = refresh_segments(session, CONFIG, local(5, 1))
    assert not again.entered and not again.left
    with sessions() as session, session.begin():
        later = refresh_segments(session, CONFIG, local(95))
    assert later.entered["churned"] == 2 and later.left["new"] == 1
    with sessions() as session:
        stays = session.execute(
            select(SegmentMembership.segment, SegmentMembership.left_at).where(
                SegmentMembership.customer_id == lapsing, SegmentMembership.family == "lifecycle"
            )
        ).all()
    assert sorted(stays, key=lambda s: s[0]) == [("churned", None), ("new", local(95))]


JOURNEY = """\
journey: seg
quiet_hours: null
entry: {segment: churned}
steps:
  - {id: winback, send: sms, template: hello.j2}
  - {id: tier-only, send: wecom, template: hello.j2, if: {segment: rfm-churned}}
"""


def test_customers_entering_a_segment_enter_the_journey_and_conditions_see_segments(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(tmp_path, channels, JOURNEY)
    ctx = EngineContext(sessions, tmp_path / "templates", dict(channels))  # type: ignore[arg-type]
    big, small = shop.customer("大客户"), shop.customer("小客户")
    for i in range(5):
        order(sessions, big, local(0, i), "2000")
    order(sessions, small, local(0), "50")
    run_tick(ctx, spec, local(1))  # switched on
    with sessions() as session, session.begin():
        refresh_segments(session, CONFIG, local(91))  # both churn on day 90
    run_tick(ctx, spec, local(91, 1))
    with sessions() as session:
        entered = set(session.scalars(select(Enrollment.customer_id)))
        rows = dict(
            session.execute(
                select(Delivery.customer_id, Delivery.reason).where(Delivery.step_id == "tier-only")
            ).all()
        )
    assert entered == {big, small}
    assert len(channels["sms"].messages) == 2
    # both are lifecycle-churned; only the one-order customer is in the rfm-churned tier
    # (F ≤ 1), the five-order one is rfm-other
    assert rows == {big: "condition_false", small: None}
    run_tick(ctx, spec, local(91, 2))
    with sessions() as session:
        assert session.scalar(select(Enrollment.id).where(Enrollment.id > 2)) is None


AT_THE_TIME = """\
journey: vip-news
quiet_hours: null
entry: {event: order_paid}
steps:
  - {id: vip-only, at: 10d, send: wecom, template: hello.j2, if: {segment: rfm-high-value}}
"""


def test_a_segment_condition_reads_the_stays_at_the_ticks_time(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    """`if: {segment: ...}` asks who was inside at the tick's `now`, so that a backtest (its
    ticks in the past, the stays recorded since) decides as the live tick did: a customer who
    left the segment later was inside, one who entered later was not."""
    spec = write_journey(tmp_path, channels, AT_THE_TIME)
    ctx = EngineContext(sessions, tmp_path / "templates", dict(channels))  # type: ignore[arg-type]
    stays = {  # name: (entered, left)
        "left-later": (local(5), local(30)),
        "entered-later": (local(25), None),
        "left-before": (local(2), local(8)),
    }
    ids = {name: shop.customer(name) for name in stays}
    run_tick(ctx, spec, local(0))  # switched on
    with sessions() as session, session.begin():
        for name, (entered, left) in stays.items():
            session.add(
                SegmentMembership(
                    customer_id=ids[name], segment="rfm-high-value", family="rfm",
                    entered_at=entered, left_at=left,
                )
            )  # fmt: skip
    for name in stays:
        order(sessions, ids[name], local(1), "500")
    run_tick(ctx, spec, local(1, 1))  # enrolled
    run_tick(ctx, spec, local(11, 2))  # the step is due: who was a high-value customer then
    with sessions() as session:
        reasons = dict(
            session.execute(
                select(Delivery.customer_id, Delivery.reason).where(Delivery.step_id == "vip-only")
            ).all()
        )
    assert reasons == {
        ids["left-later"]: None,
        ids["entered-later"]: "condition_false",
        ids["left-before"]: "condition_false",
    }
    assert [m.customer_id for m in channels["wecom"].messages] == [ids["left-later"]]


def test_unknown_segment_names_are_reported_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hello.j2").write_text("hi {{ customer.name }}")
    path = tmp_path / "j.yaml"
    path.write_text(
        "journey: j\nentry: {segment: churnd}\nsteps:\n"
        "  - {id: s, send: sms, template: hello.j2, if: {segment: rfm-high-valu}}\n"
    )
    _spec, problems = check_journey_file(path, Catalog({"sms"}, tmp_path / "templates"))
    assert any(
        p.line == 2 and p.code == "unknown-segment" and "possible: 'churned'" in p.message
        for p in problems
    )
    assert any(p.line == 4 and "did you mean 'rfm-high-value'" in p.message for p in problems)


def test_a_bad_segments_file_names_the_place_and_the_key_meant(tmp_path: Path) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text(
        "rfm:\n  tiers:\n    - name: vip\n      recency_day: {max: 7}\n"
        "lifecycle:\n  churned_days: 10\n"
    )
    with pytest.raises(SpecError) as error:
        load_segments(path)
    messages = [(p.line, p.column, p.message) for p in error.value.problems]
    assert any(
        line == 4 and col == 7 and "did you mean 'recency_days'" in message
        for line, col, message in messages
    )
    assert any(
        line == 6 and "at_risk_days must be fewer" in message for line, _c, message in messages
    )
