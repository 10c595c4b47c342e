"""The journey language's semantics, each with a simulated clock: conditions, experiments,
timing (anchors, anniversaries, seconds windows, calendars), re-entry, consent and opt-outs,
versions."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.optouts import apply_unsubscribe
from siyu.engine.tick import run_tick
from siyu.storage.models import (
    Consent,
    Customer,
    Delivery,
    Enrollment,
    Event,
    Subscription,
    Suppression,
)
from siyu.unsubscribe import BadToken, make_token
from tests.conftest import Shop, canonical_journey, local
from tests.journey_files import write_journey
from tests.recording_channel import RecordingChannel

HEAD = "journey: {name}\nquiet_hours: null\nentry: {{event: order_paid, where: order_seq = 1}}\n"


def ctx_for(
    sessions: sessionmaker[Session], channels: dict[str, RecordingChannel], tmp_path: Path
) -> EngineContext:
    return EngineContext(sessions, tmp_path / "templates", dict(channels))  # type: ignore[arg-type]


def rows(ctx: EngineContext, step: str) -> dict[int, tuple[str, str | None, str | None]]:
    with ctx.sessions() as session:
        found = session.execute(
            select(Delivery.customer_id, Delivery.status, Delivery.reason, Delivery.variant).where(
                Delivery.step_id == step
            )
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in found}


def add_event(
    sessions: sessionmaker[Session], customer_id: int, name: str, at: datetime, **properties: str
) -> None:
    with sessions() as session, session.begin():
        session.add(
            Event(customer_id=customer_id, name=name, occurred_at=at, properties=properties)
        )


# --- conditions and branches ----------------------------------------------------------------


def test_if_is_checked_right_before_the_send(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        HEAD.format(name="branch")
        + (
            "steps:\n"
            "  - id: in-group-tip\n    at: 1d\n    send: wecom\n    template: hello.j2\n"
            "    if: {event: group_joined, since: entry}\n"
            "  - id: sms-fallback\n    at: 1d\n    send: sms\n    template: hello.j2\n"
            "    if: {not: {reachable: wecom}}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    joined = shop.customer("入群")
    not_joined = shop.customer("未入群")
    no_wecom = shop.customer("无企微", identities=("mobile",))
    run_tick(ctx, spec, local(0))
    for buyer in (joined, not_joined, no_wecom):
        shop.order(buyer, local(0, 10), seq=1)
    add_event(sessions, joined, "group_joined", local(0, 20))  # joined after entry, before send

    run_tick(ctx, spec, local(1, 11))

    tip = rows(ctx, "in-group-tip")
    assert tip[joined][0] == "sent"
    assert tip[not_joined][:2] == ("skipped", "condition_false")
    fallback = rows(ctx, "sms-fallback")
    assert fallback[no_wecom][0] == "sent"
    assert fallback[joined][:2] == ("skipped", "condition_false")


def test_customer_and_step_conditions(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        HEAD.format(name="vip")
        + (
            "steps:\n"
            "  - {id: first, send: wecom, template: hello.j2, if: {customer: \"city = '上海'\"}}\n"
            "  - {id: second, at: 1h, send: sms, template: hello.j2,\n"
            "     if: {any: [{step: first, status: skipped}, {step: first, status: failed}]}}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    shanghai, beijing = shop.customer("沪"), shop.customer("京")
    with sessions() as session, session.begin():
        session.execute(update(Customer).where(Customer.id == shanghai).values(city="上海"))
        session.execute(update(Customer).where(Customer.id == beijing).values(city="北京"))
    run_tick(ctx, spec, local(0))
    for buyer in (shanghai, beijing):
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 10.5))
    run_tick(ctx, spec, local(0, 11.5))
    assert rows(ctx, "first")[shanghai][0] == "sent"
    assert rows(ctx, "second")[shanghai][1] == "condition_false"
    assert rows(ctx, "second")[beijing][0] == "sent"  # the fallback for those skipped


# --- experiments ----------------------------------------------------------------------------


def test_holdout_and_variants_are_stable_and_weighted(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    text = (
        HEAD.format(name="ab")
        + "holdout: 20%\nsteps:\n"
        + (
            "  - id: offer\n    send: sms\n    template: hello.j2\n    variants:\n"
            "      - {id: a, weight: 1, template: a.j2}\n"
            "      - {id: b, weight: 3, template: b.j2}\n"
        )
    )
    spec = write_journey(tmp_path, channels, text)
    ctx = ctx_for(sessions, channels, tmp_path)
    run_tick(ctx, spec, local(0))
    buyers = [shop.customer(f"c{i}") for i in range(400)]
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    run_tick(ctx, spec, local(0, 12))  # a rerun changes no assignment

    offer = rows(ctx, "offer")
    held = [c for c, r in offer.items() if r[1] == "holdout"]
    assert 0.14 < len(held) / 400 < 0.26
    variants = Counter(r[2] for r in offer.values() if r[0] == "sent")
    assert 0.15 < variants["a"] / (variants["a"] + variants["b"]) < 0.35
    sent_to = {m.customer_id: m.body for m in channels["sms"].messages}
    assert not set(held) & set(sent_to)
    assert all(body.startswith(offer[c][2].upper() + ":") for c, body in sent_to.items())
    # Same customer, journey and step: same assignment in a new version or a new database.
    from siyu.engine.assignment import in_holdout, pick_variant

    assert all(in_holdout(c, "ab", 0.2) for c in held)
    assert all(
        pick_variant(c, "ab", "offer", spec.steps[0].variants or []).id == offer[c][2]
        for c in sent_to
    )


# --- timing ---------------------------------------------------------------------------------


def test_renewal_reminder_three_days_before_the_renewal_date(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        (
            "journey: renewal\nquiet_hours: null\nentry: {event: subscription_started}\nsteps:\n"
            "  - id: remind\n    at: {from: event.renews_at, offset: -3d}\n    within: -2d\n"
            "    send: sms\n    template: hello.j2\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    member = shop.customer()
    run_tick(ctx, spec, local(0))
    with sessions() as session, session.begin():
        session.add(
            Subscription(
                customer_id=member, plan="年卡", started_at=local(0, 9), renews_at=local(30, 9)
            )
        )
    for day in (0, 26, 27):
        run_tick(ctx, spec, local(day, 8.5))
    assert member not in rows(ctx, "remind")
    run_tick(ctx, spec, local(27, 9))  # exactly renewal − 3 days
    assert rows(ctx, "remind")[member][0] == "sent"


def test_birthday_is_an_anniversary_in_the_customers_year(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        HEAD.format(name="birthday")
        + (
            "steps:\n  - id: greet\n    at: {from: customer.birthday, annual: true, offset: 10h}\n"
            "    within: 1d\n    send: sms\n    template: hello.j2\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    fan = shop.customer()
    with sessions() as session, session.begin():
        session.execute(
            update(Customer).where(Customer.id == fan).values(birthday=date(1990, 11, 10))
        )
    run_tick(ctx, spec, local(0))
    shop.order(fan, local(0, 10), seq=1)  # 2 November 2026
    run_tick(ctx, spec, local(8, 9.9))
    assert fan not in rows(ctx, "greet")
    run_tick(ctx, spec, local(8, 10))  # 10 November 2026, 10:00 Shanghai
    assert rows(ctx, "greet")[fan][0] == "sent"


@pytest.mark.parametrize(
    "tick_after_seconds, expected", [(60, "sent"), (179, "sent"), (181, "skipped")]
)
def test_near_real_time_window_in_seconds(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
    tick_after_seconds: int,
    expected: str,
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        (
            "journey: browse-offer\nquiet_hours: null\nentry: {event: browse}\n"
            "entry_reentry: null\n".replace("entry_reentry: null\n", "")
            + "steps:\n  - {id: offer, at: 60s, within: 180s, send: sms, template: hello.j2}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    shopper = shop.customer()
    run_tick(ctx, spec, local(0))
    add_event(sessions, shopper, "browse", local(0, 10), category="生鲜")
    run_tick(ctx, spec, local(0, 10) + timedelta(seconds=30))  # enrolled, not yet due
    run_tick(ctx, spec, local(0, 10) + timedelta(seconds=tick_after_seconds))
    status = rows(ctx, "offer")[shopper]
    assert status[0] == expected
    if expected == "skipped":
        assert status[1] == "expired"  # dropped, not sent late
        assert channels["sms"].messages == []


def test_calendar_journey_enrolls_its_audience_every_wednesday(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        (
            'journey: topic-day\nentry:\n  calendar: "0 10 * * 3"\n  audience: "city = \'杭州\'"\n'
            "steps:\n  - {id: topic, send: wecom, template: hello.j2}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    member, outsider = shop.customer(), shop.customer()
    with sessions() as session, session.begin():
        session.execute(update(Customer).where(Customer.id == member).values(city="杭州"))
    for hour in range(0, 24 * 15, 6):  # two weeks and a day from Monday 2 November
        run_tick(ctx, spec, local(0, hour))
    messages = [m.customer_id for m in channels["wecom"].messages]
    assert messages == [member, member]  # Wednesdays 4 and 11 November
    with ctx.sessions() as session:
        entered = session.scalars(select(Enrollment.entered_at).order_by(Enrollment.id)).all()
    assert entered == [local(2, 10), local(9, 10)]
    assert outsider not in messages


@pytest.mark.parametrize("first_tick, expected", [((2, 10), 1), ((2, 11), 0)])
def test_a_calendar_firing_at_the_first_ticks_own_moment_counts(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
    first_tick: tuple[int, int],
    expected: int,
) -> None:
    """A journey switched on at the moment its calendar fires enrolls its audience then, as an
    entry event at that moment enters; one switched on an hour later waits for next week."""
    spec = write_journey(
        tmp_path,
        channels,
        (
            'journey: topic-day\nentry:\n  calendar: "0 10 * * 3"\n'
            "steps:\n  - {id: topic, send: wecom, template: hello.j2}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    member = shop.customer()
    run_tick(ctx, spec, local(*first_tick))  # Wednesday 4 November, 10:00 or 11:00
    run_tick(ctx, spec, local(2, 12))
    assert [m.customer_id for m in channels["wecom"].messages] == [member] * expected


# --- re-entry -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, expected", [("never", 1), ("always", 3), ("{after: 30d}", 2)])
def test_reentry_policies(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
    policy: str,
    expected: int,
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        (
            "journey: every-order\nquiet_hours: null\n"
            f"entry: {{event: order_paid, reentry: {policy}}}\n"
            "steps:\n  - {id: thanks, send: sms, template: hello.j2}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    for seq, day in enumerate((0, 10, 45), start=1):
        shop.order(buyer, local(day, 10), seq=seq)
        run_tick(ctx, spec, local(day, 11))
        run_tick(ctx, spec, local(day, 12))
    assert len(channels["sms"].messages) == expected


# --- consent and opt-outs -------------------------------------------------------------------


def test_each_consent_purpose_is_required(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(
        tmp_path,
        channels,
        HEAD.format(name="recs")
        + (
            "steps:\n  - {id: picks, send: sms, template: hello.j2,"
            " consent: [marketing, personalisation]}\n"
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    marketing_only, both = shop.customer(), shop.customer()
    with sessions() as session, session.begin():
        session.add(
            Consent(customer_id=both, purpose="personalisation", granted=True, updated_at=local(-1))
        )
    run_tick(ctx, spec, local(0))
    for buyer in (marketing_only, both):
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    assert rows(ctx, "picks")[marketing_only][:2] == ("skipped", "no_consent:personalisation")
    assert rows(ctx, "picks")[both][0] == "sent"


def test_reply_td_stops_sms_before_the_next_send(
    ctx: EngineContext,
    shop: Shop,
    sessions: sessionmaker[Session],
    channels: dict[str, RecordingChannel],
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    add_event(sessions, buyer, "sms_reply", local(3, 12), text=" td ")  # 回TD退订
    for day in range(1, 16):
        run_tick(ctx, spec, local(day, 11))
    assert rows(ctx, "day14-repurchase")[buyer][:2] == ("skipped", "suppressed")
    assert channels["sms"].messages == []
    assert len(channels["wecom"].messages) == 1  # other channels are unaffected


def test_unsubscribe_link_is_signed_and_suppresses(
    monkeypatch: pytest.MonkeyPatch,
    ctx: EngineContext,
    shop: Shop,
    sessions: sessionmaker[Session],
    channels: dict[str, RecordingChannel],
) -> None:
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", "test-only-signing-key-1234")
    buyer = shop.customer()
    token = make_token(buyer, "*")
    forged = token.replace(f"{buyer}.", f"{buyer + 1}.", 1)
    now = datetime(2026, 11, 2, tzinfo=UTC)
    with sessions() as session, session.begin():
        with pytest.raises(BadToken):
            apply_unsubscribe(session, forged, now)
        assert apply_unsubscribe(session, token, now) == (buyer, "*")
    spec = canonical_journey(channels)
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    assert all(m.customer_id != buyer for c in channels.values() for m in c.messages)
    with sessions() as session:
        assert session.scalars(select(Suppression.channel)).all() == ["*"]


def test_unsubscribe_link_renders_where_a_template_reads_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    """The signed link is made only for templates that may read it: directly, or through
    an include (which the engine cannot see into cheaply, so it always makes the link)."""
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", "test-only-signing-key-1234")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "direct.j2").write_text("退订 {{ unsubscribe_url }}", encoding="utf-8")
    (templates / "footer.j2").write_text("退订 {{ unsubscribe_url }}", encoding="utf-8")
    (templates / "included.j2").write_text("您好 {% include 'footer.j2' %}", encoding="utf-8")
    (templates / "plain.j2").write_text("您好 {{ customer.name }}", encoding="utf-8")
    spec = write_journey(
        tmp_path,
        channels,
        HEAD.format(name="links")
        + "steps:\n"
        + "".join(
            f"  - {{id: {name}, at: 1d, send: wecom, template: {name}.j2}}\n"
            for name in ("direct", "included", "plain")
        ),
    )
    ctx = ctx_for(sessions, channels, tmp_path)
    buyer = shop.customer("李雷")
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    run_tick(ctx, spec, local(1, 12))
    bodies = {m.body.split()[0] + str(i): m.body for i, m in enumerate(channels["wecom"].messages)}
    link = f"/u/{make_token(buyer, 'wecom')}"
    assert len(bodies) == 3
    assert sum(1 for body in bodies.values() if body.endswith(link)) == 2
    assert "您好 李雷" in bodies.values()


# --- versions -------------------------------------------------------------------------------

V1 = (
    HEAD.format(name="evolving")
    + "version: 1\nsteps:\n"
    + (
        "  - {id: hello, send: sms, template: hello.j2}\n"
        "  - {id: later, at: 2d, send: sms, template: a.j2}\n"
    )
)


def test_new_version_keeps_customers_on_their_own_version(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    v1 = write_journey(tmp_path, channels, V1)
    ctx = ctx_for(sessions, channels, tmp_path)
    early = shop.customer("老")
    run_tick(ctx, v1, local(0))
    shop.order(early, local(0, 10), seq=1)
    run_tick(ctx, v1, local(0, 11))
    v2 = write_journey(
        tmp_path,
        channels,
        V1.replace("version: 1", "version: 2").replace(
            "{id: later, at: 2d, send: sms, template: a.j2}",
            "{id: later-v2, at: 2d, send: sms, template: b.j2}",
        ),
    )
    late = shop.customer("新")
    shop.order(late, local(1, 10), seq=1)
    for day in (1, 2, 3, 4):
        run_tick(ctx, v2, local(day, 11))
    bodies = {(m.customer_id, m.body[:2]) for m in channels["sms"].messages}
    assert (early, "A:") in bodies and (early, "B:") not in bodies
    assert (late, "B:") in bodies and (late, "A:") not in bodies


def test_new_version_can_move_customers_and_map_steps(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    v1 = write_journey(tmp_path, channels, V1)
    ctx = ctx_for(sessions, channels, tmp_path)
    inside = shop.customer()
    run_tick(ctx, v1, local(0))
    shop.order(inside, local(0, 10), seq=1)
    run_tick(ctx, v1, local(0, 11))  # `hello` sent under v1
    v2 = write_journey(
        tmp_path,
        channels,
        V1.replace("version: 1", ("version: 2\nmigrate: {policy: move, steps: {hello: hello-v2}}"))
        .replace("{id: hello,", "{id: hello-v2,")
        .replace("template: a.j2", "template: b.j2"),
    )
    for day in (1, 2, 3):
        run_tick(ctx, v2, local(day, 11))
    bodies = [m.body for m in channels["sms"].messages]
    assert len(bodies) == 2  # hello once (mapped, not re-sent), then v2's `later`
    assert bodies[1].startswith("B:")


def test_lowering_a_version_is_refused(
    tmp_path: Path, sessions: sessionmaker[Session], channels: dict[str, RecordingChannel]
) -> None:
    from siyu.errors import ConfigError

    ctx = ctx_for(sessions, channels, tmp_path)
    run_tick(
        ctx, write_journey(tmp_path, channels, V1.replace("version: 1", "version: 3")), local(0)
    )
    with pytest.raises(ConfigError, match="version 3"):
        run_tick(ctx, write_journey(tmp_path, channels, V1), local(1))
