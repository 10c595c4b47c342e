"""Quiet hours, frequency caps (rolling and calendar, shared between journeys, with priority),
fatigue back-off — each at its boundaries, with a simulated clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick, run_ticks_by_priority
from siyu.policies import Cap, Fatigue, Policies
from siyu.storage.models import Delivery, Event
from tests.conftest import ROOT, Shop, local
from tests.journey_files import write_journey
from tests.recording_channel import RecordingChannel


def ledger(ctx: EngineContext) -> dict[tuple[str, str], tuple[str, str | None]]:
    with ctx.sessions() as session:
        rows = session.execute(
            select(Delivery.journey_name, Delivery.step_id, Delivery.status, Delivery.reason)
        ).all()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def context(
    sessions: sessionmaker[Session],
    channels: dict[str, RecordingChannel],
    tmp_path: Path,
    policies: Policies | None = None,
) -> EngineContext:
    return EngineContext(
        sessions,
        tmp_path / "templates",
        dict(channels),  # type: ignore[arg-type]
        policies=policies or Policies(),
    )


def sms_journey(name: str, days: int, *, priority: int = 0, quiet: str = "null") -> str:
    steps = "".join(
        f"  - {{id: sms-{d}, at: {d}d, send: sms, template: hello.j2}}\n" for d in range(days)
    )
    return (
        f"journey: {name}\npriority: {priority}\nquiet_hours: {quiet}\n"
        "entry: {event: order_paid, where: order_seq = 1}\nsteps:\n" + steps
    )


@pytest.mark.parametrize(
    "hour, expected",
    [
        (20.98, "sent"),  # 20:59 — still allowed
        (21, "deferred"),  # exactly 21:00 — quiet hours have begun
        (8.98, "deferred"),  # 08:59 — still quiet
        (9, "sent"),  # exactly 09:00 — allowed again
    ],
)
def test_quiet_hours_boundaries(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
    hour: float,
    expected: str,
) -> None:
    spec = write_journey(tmp_path, channels, sms_journey("quiet", 1, quiet='"21:00-09:00"'))
    ctx = context(sessions, channels, tmp_path)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 0.5), seq=1)
    run_tick(ctx, spec, local(0, hour))
    assert ledger(ctx)[("quiet", "sms-0")][0] == expected


def test_the_ninth_sms_of_a_month_waits_for_next_month(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    policies = Policies(caps=[Cap(name="sms-month", channels=["sms"], max=8, per="month")])
    spec = write_journey(tmp_path, channels, sms_journey("monthly", 9))
    ctx = context(sessions, channels, tmp_path, policies)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)  # Monday 2 November
    for day in range(9):
        run_tick(ctx, spec, local(day, 11))

    rows = ledger(ctx)
    assert [rows[("monthly", f"sms-{d}")][0] for d in range(8)] == ["sent"] * 8  # 8th: sent
    assert rows[("monthly", "sms-8")] == ("deferred", "cap:sms-month")  # 9th: held
    with ctx.sessions() as session:
        resume = session.scalar(select(Delivery.next_attempt_at).where(Delivery.step_id == "sms-8"))
    assert resume == local(29)  # 1 December, 00:00 Shanghai
    run_tick(ctx, spec, local(29, 0.25))
    assert ledger(ctx)[("monthly", "sms-8")][0] == "sent"
    assert len(channels["sms"].messages) == 9


def test_rolling_window_cap_defers_to_the_exact_moment(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    policies = Policies(
        caps=[Cap(name="sms-2-days", channels=["sms"], max=1, per=timedelta(days=2))]
    )
    spec = write_journey(tmp_path, channels, sms_journey("rolling", 2))
    ctx = context(sessions, channels, tmp_path, policies)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    run_tick(ctx, spec, local(1, 11))
    assert ledger(ctx)[("rolling", "sms-1")] == ("deferred", "cap:sms-2-days")
    run_tick(ctx, spec, local(2, 10.9))  # 1 h 54 min... not yet two days after 11:00
    assert ledger(ctx)[("rolling", "sms-1")][0] == "deferred"
    run_tick(ctx, spec, local(2, 11))
    assert ledger(ctx)[("rolling", "sms-1")][0] == "sent"


@pytest.mark.parametrize("winner, loser", [("coupon", "survey"), ("survey", "coupon")])
def test_a_cap_shared_by_two_journeys_goes_to_the_higher_priority(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
    winner: str,
    loser: str,
) -> None:
    policies = Policies(
        caps=[Cap(name="sms-2-days", channels=["sms"], max=1, per=timedelta(days=2))]
    )
    first = write_journey(tmp_path, channels, sms_journey(winner, 1, priority=10), "w.yaml")
    second = write_journey(tmp_path, channels, sms_journey(loser, 1, priority=1), "l.yaml")
    ctx = context(sessions, channels, tmp_path, policies)
    buyer = shop.customer()
    run_ticks_by_priority(ctx, [second, first], local(0))
    shop.order(buyer, local(0, 10), seq=1)

    run_ticks_by_priority(ctx, [second, first], local(0, 11))

    rows = ledger(ctx)
    assert rows[(winner, "sms-0")][0] == "sent"
    assert rows[(loser, "sms-0")] == ("deferred", "cap:sms-2-days")
    assert len(channels["sms"].messages) == 1


def test_fatigue_pauses_after_unanswered_messages_and_a_reply_resets_it(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    policies = Policies(fatigue=Fatigue(after=2, pause=timedelta(days=14)))
    spec = write_journey(tmp_path, channels, sms_journey("nag", 4))
    ctx = context(sessions, channels, tmp_path, policies)
    quiet_one, replier = shop.customer("不回"), shop.customer("回复")
    run_tick(ctx, spec, local(0))
    for buyer in (quiet_one, replier):
        shop.order(buyer, local(0, 9), seq=1)
    run_tick(ctx, spec, local(0, 10))
    run_tick(ctx, spec, local(1, 10))
    with sessions() as session, session.begin():  # the replier answers after message 2
        session.add(
            Event(
                customer_id=replier,
                name="sms_reply",
                occurred_at=local(1, 12),
                properties={"text": "好的"},
            )
        )
    run_tick(ctx, spec, local(2, 10))

    with ctx.sessions() as session:
        third = dict(
            session.execute(
                select(Delivery.customer_id, Delivery.reason).where(Delivery.step_id == "sms-2")
            )
            .tuples()
            .all()
        )
    assert third[quiet_one] == "fatigue"
    assert third[replier] is None  # sent
    messages = [m.customer_id for m in channels["sms"].messages]
    assert messages.count(quiet_one) == 2 and messages.count(replier) == 3


def test_notifications_are_neither_capped_nor_quiet(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    policies = Policies(caps=[Cap(name="none", channels="all", max=1, per="day")])
    spec = write_journey(
        tmp_path,
        channels,
        (
            "journey: receipts\nentry: {event: order_paid}\nsteps:\n"
            "  - {id: a, send: sms, template: hello.j2, purpose: notification}\n"
            "  - {id: b, send: sms, template: hello.j2, purpose: notification}\n"
        ),
    )
    ctx = context(sessions, channels, tmp_path, policies)
    buyer = shop.customer(consent=None)  # notifications need no marketing consent
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 23), seq=1)
    run_tick(ctx, spec, local(0, 23.5))  # 23:30, inside the default quiet hours
    assert len(channels["sms"].messages) == 2


def test_default_policies_file_loads() -> None:
    from siyu.policies import load_policies

    policies = load_policies(ROOT / "policies.yaml")
    names = [cap.name for cap in policies.caps]
    assert "sms-month" in names and "sms-2-days" in names


def test_channel_platform_quotas_are_enforced_as_caps() -> None:
    from siyu.project import Project

    caps = {cap.name: cap for cap in Project.find(ROOT).policies().caps}
    quota = caps["wecom-platform-quota"]
    assert quota.channels == ["wecom"] and quota.max == 1 and quota.per == timedelta(days=1)
    assert "sms-month" in caps  # policies.yaml's caps are kept alongside
