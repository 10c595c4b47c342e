"""Time-travel tests of the canonical journey (首购自动入群 → 3天内企微关怀 → 7天内容种草 →
14天复购激励): a simulated clock ticks the engine over weeks in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import select

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.language.spec import JourneySpec
from siyu.storage.models import Delivery, Enrollment, Journey
from tests.conftest import Shop, canonical_journey, local
from tests.recording_channel import RecordingChannel


def clock(
    start: datetime, end: datetime, every: timedelta = timedelta(hours=1)
) -> Iterator[datetime]:
    now = start
    while now <= end:
        yield now
        now += every


def run_days(
    ctx: EngineContext,
    spec: JourneySpec,
    start: datetime,
    end: datetime,
    every: timedelta = timedelta(hours=1),
) -> None:
    for now in clock(start, end, every):
        run_tick(ctx, spec, now)


def sends(
    ctx: EngineContext, customer_id: int
) -> dict[str, tuple[str, str | None, datetime | None]]:
    with ctx.sessions() as session:
        rows = session.execute(
            select(Delivery.step_id, Delivery.status, Delivery.reason, Delivery.sent_at).where(
                Delivery.customer_id == customer_id
            )
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_first_purchase_gets_each_step_once_at_its_time(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer("李娜")
    shop.order(buyer, local(0, 10.5), seq=1)  # first purchase, day 0 at 10:30 Shanghai

    run_days(ctx, spec, local(0), local(16))

    ledger = sends(ctx, buyer)
    assert {step: status for step, (status, _, _) in ledger.items()} == {
        "join-group": "sent",
        "day3-care": "sent",
        "day7-content": "sent",
        "day14-repurchase": "sent",
    }
    # Hourly ticks: each step goes out at the first tick after it is due.
    assert ledger["join-group"][2] == local(0, 11)
    assert ledger["day3-care"][2] == local(1, 11)
    assert ledger["day3-care"][2] <= local(3, 10.5)
    assert ledger["day7-content"][2] == local(7, 11)
    assert ledger["day14-repurchase"][2] == local(14, 11)
    # Exactly one message per step reached each channel, addressed to this customer.
    for name in ("wecom_group_invite", "wecom", "service_account", "sms"):
        assert [m.customer_id for m in channels[name].messages] == [buyer]
    coupon = channels["sms"].messages[0]
    assert "李娜" in coupon.body and "回T退订" in coupon.body and "护肤" in coupon.body
    with ctx.sessions() as session:
        assert session.scalar(select(Enrollment.status)) == "completed"


def test_repurchase_on_day_5_ends_the_journey(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    shop.order(buyer, local(0, 10.5), seq=1)
    shop.order(buyer, local(5, 15), seq=2)  # repurchase on day 5

    run_days(ctx, spec, local(0), local(20))

    assert set(sends(ctx, buyer)) == {"join-group", "day3-care"}
    assert channels["service_account"].messages == []
    assert channels["sms"].messages == []
    with ctx.sessions() as session:
        enrollment = session.scalars(select(Enrollment)).one()
    assert enrollment.status == "exited"
    assert enrollment.exited_at == local(5, 15)
    assert enrollment.goal_reached_at == local(5, 15)


def test_a_goal_imported_late_still_counts_and_one_older_than_the_late_window_does_not(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    """A tick looks for goal events only since the previous tick's scan, minus the late-event
    window (7 days): a repurchase imported 2 days after it happened is still the goal; one
    imported after more than the window is not (the window's documented bound)."""
    spec = canonical_journey(channels)
    on_time, too_late = shop.customer("顾客甲"), shop.customer("顾客乙")
    for buyer in (on_time, too_late):
        shop.order(buyer, local(0, 10.5), seq=1)
    run_days(ctx, spec, local(0), local(3), timedelta(hours=12))
    shop.order(on_time, local(1, 9), seq=2)  # a day-1 repurchase, imported on day 3
    run_tick(ctx, spec, local(3, 12))
    run_days(ctx, spec, local(4), local(12), timedelta(hours=12))
    shop.order(too_late, local(2, 9), seq=2)  # a day-2 repurchase, imported on day 12
    run_tick(ctx, spec, local(12, 12))

    with ctx.sessions() as session:
        rows = session.execute(select(Enrollment.customer_id, Enrollment.goal_reached_at))
        goals = {customer: reached for customer, reached in rows}
        journey = session.scalars(select(Journey)).one()
    assert goals == {on_time: local(1, 9), too_late: None}
    assert journey.goals_through == local(12, 12)


def test_repurchase_between_ticks_is_caught_before_the_send(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    """The exit is checked again right before each send, not only at the tick's start."""
    spec = canonical_journey(channels)
    buyer = shop.customer()
    shop.order(buyer, local(0, 10.5), seq=1)
    run_days(ctx, spec, local(0), local(13, 23))
    shop.order(buyer, local(14, 10.6), seq=2)  # repurchase on day 14, 6 minutes after due

    run_tick(ctx, spec, local(14, 11))

    assert channels["sms"].messages == []
    assert "day14-repurchase" not in sends(ctx, buyer)


def test_rerunning_ticks_sends_nothing_twice(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyers = [shop.customer(f"顾客{i}") for i in range(30)]
    for i, buyer in enumerate(buyers):
        shop.order(buyer, local(0, 9 + i % 10), seq=1)

    for now in clock(local(0), local(15), timedelta(hours=2)):
        run_tick(ctx, spec, now)
        run_tick(ctx, spec, now)  # the same tick again: a rerun or a retried flow run
    run_days(ctx, spec, local(0), local(15), timedelta(hours=6))  # and the past, replayed

    for channel in channels.values():
        keys = [m.idempotency_key for m in channel.messages]
        assert len(keys) == len(set(keys)), f"{channel.name} got a message twice"
    assert len(channels["sms"].messages) == 30
    assert len(channels["wecom_group_invite"].messages) == 30


def test_a_due_step_is_sent_once_however_many_ticks_pass(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0))
    # The scheduler was down: the next tick comes on day 7 at noon.
    run_tick(ctx, spec, local(7, 12))
    run_days(ctx, spec, local(7, 13), local(9), timedelta(hours=3))

    ledger = sends(ctx, buyer)
    assert ledger["join-group"][0] == "sent"
    assert ledger["day3-care"][:2] == ("skipped", "expired")  # never sent late
    assert ledger["day7-content"][0] == "sent"
    assert len(channels["service_account"].messages) == 1
    assert channels["wecom"].messages == []


def test_quiet_hours_defer_and_never_drop(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    night_owl = shop.customer()
    shop.order(night_owl, local(0, 23.25), seq=1)  # 23:15 Shanghai

    run_days(ctx, spec, local(0, 23), local(1, 7.75), timedelta(minutes=15))
    ledger = sends(ctx, night_owl)
    assert ledger["join-group"][:2] == ("deferred", "quiet_hours")
    assert channels["wecom_group_invite"].messages == []

    run_days(ctx, spec, local(1, 8), local(1, 9), timedelta(minutes=15))
    assert sends(ctx, night_owl)["join-group"][0] == "sent"
    assert sends(ctx, night_owl)["join-group"][2] == local(1, 8)


def test_quiet_hours_follow_the_customers_time_zone(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    in_london = shop.customer(timezone="Europe/London")
    run_tick(ctx, spec, local(0))  # the journey is switched on
    shop.order(in_london, local(0, 10), seq=1)  # 10:00 Shanghai = 02:00 London (GMT)

    run_tick(ctx, spec, local(0, 10.25))
    assert sends(ctx, in_london)["join-group"][:2] == ("deferred", "quiet_hours")
    run_tick(ctx, spec, local(0, 16.25))  # 08:15 London
    assert sends(ctx, in_london)["join-group"][0] == "sent"


def test_no_consent_no_address_and_opt_out_are_skipped_with_reasons(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    never_asked = shop.customer(consent=None)
    withdrew = shop.customer(consent=False)
    no_wecom = shop.customer(identities=("mobile",))
    for buyer in (never_asked, withdrew, no_wecom):
        shop.order(buyer, local(0, 10), seq=1)

    run_days(ctx, spec, local(0), local(15), timedelta(hours=3))

    assert set(sends(ctx, never_asked).values()) == {("skipped", "no_consent:marketing", None)}
    assert set(sends(ctx, withdrew).values()) == {("skipped", "no_consent:marketing", None)}
    ledger = sends(ctx, no_wecom)
    assert ledger["join-group"][:2] == ("skipped", "no_address:wecom_external_userid")
    assert ledger["day7-content"][:2] == ("skipped", "no_address:wechat_openid")
    assert ledger["day14-repurchase"][0] == "sent"
    everyone = [m.customer_id for c in channels.values() for m in c.messages]
    assert never_asked not in everyone and withdrew not in everyone


def test_entries_before_activation_are_not_enrolled(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    """Switching a journey on must not message everyone who ever bought."""
    spec = canonical_journey(channels)
    old_buyer = shop.customer()
    shop.order(old_buyer, local(-20, 10), seq=1)
    new_buyer = shop.customer()
    shop.order(new_buyer, local(0, 11), seq=1)

    run_days(ctx, spec, local(0, 10), local(0, 12))

    with ctx.sessions() as session:
        assert session.scalars(select(Enrollment.customer_id)).all() == [new_buyer]
