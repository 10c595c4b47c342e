"""Isolation and configuration errors (issue 13, items 4 and 8).

- One customer's bad data (a time zone that does not exist, a date out of range, JSON that
  does not parse) fails that customer's message with `bad_customer_data:<field>`; every other
  customer of the batch is sent, and the reason never holds the bad value itself.
- A channel whose secret or key the provider refuses holds the due messages (`deferred`,
  `channel_auth:<code>`, the attempt not counted), opens the channel's breaker with an alert
  event and logs a WARNING; nothing becomes a final `failed`. Once the right secret is in
  place, later ticks send every held message exactly once (counted at the sandbox).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import Channel
from siyu.channels.registry import build_channels
from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import AlertEvent, ChannelBreaker, Delivery
from siyu.timezones import UnknownTimeZone, is_time_zone, zone
from tests.channels.conftest import fast_config
from tests.conftest import Shop, local
from tests.recording_channel import RecordingChannel, recording_channels

ON_POSTGRES = bool(os.environ.get("SIYU_TEST_POSTGRES_URL"))


def journey(
    tmp_path: Path,
    channels: set[str],
    step: str,
    *,
    template: str = "{{ customer.name }}您好",
    entry: str = "{event: order_paid, where: order_seq = 1}",
    quiet_hours: str = "null",
) -> tuple[JourneySpec, Path]:
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "msg.j2").write_text(template, encoding="utf-8")
    path = tmp_path / "j.yaml"
    path.write_text(
        f"journey: isolation\nquiet_hours: {quiet_hours}\nentry: {entry}\nsteps:\n  - {step}\n",
        encoding="utf-8",
    )
    return load_journey(path, Catalog(channels, templates)), templates


def ledger(sessions: sessionmaker[Session]) -> dict[int, tuple[str, str | None, int]]:
    with sessions() as session:
        return {
            customer: (status, reason, attempts)
            for customer, status, reason, attempts in session.execute(
                select(Delivery.customer_id, Delivery.status, Delivery.reason, Delivery.attempts)
            )
        }


def set_column(sessions: sessionmaker[Session], sql: str, **params: Any) -> None:
    """Write a value past the ORM, the way a CRM sync or a hand-edited table would."""
    with sessions() as session, session.begin():
        session.execute(text(sql), params)


# --- the time zone helper (shared with the validator and the importer) -----------------------


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "Asia", "/etc/passwd", "../etc/passwd", "a\x00b", "x" * 300]
)
def test_names_that_are_not_time_zones_are_one_exception(name: str) -> None:
    assert not is_time_zone(name)
    with pytest.raises(UnknownTimeZone) as raised:
        zone(name)
    assert str(raised.value) == "not an IANA time zone name (e.g. Asia/Shanghai)"  # no echo


def test_real_time_zones_are_accepted() -> None:
    assert is_time_zone("Asia/Shanghai") and is_time_zone("UTC")
    assert not is_time_zone(None) and not is_time_zone(42)


# --- one bad customer fails one message ---------------------------------------------------------


def test_an_unknown_time_zone_fails_that_customer_only(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """The review's case: `Mars/Olympus` made every retry of the step fail for everyone."""
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: hello, send: sms, template: msg.j2}",
        quiet_hours="21:00-09:00",
    )
    ctx = EngineContext(sessions, templates, dict(channels), batch_size=4)  # type: ignore[arg-type]
    good = [shop.customer(f"顾客{i}") for i in range(6)]
    martian = shop.customer("火星人", timezone="Mars/Olympus")
    more = [shop.customer(f"客{i}") for i in range(3)]
    run_tick(ctx, spec, local(0))
    for buyer in [*good, martian, *more]:
        shop.order(buyer, local(0, 10), seq=1)

    run_tick(ctx, spec, local(0, 11))  # quiet hours apply: the zone is needed

    rows = ledger(sessions)
    assert rows.pop(martian) == ("failed", "bad_customer_data:timezone", 0)
    assert set(rows.values()) == {("sent", None, 1)} and set(rows) == {*good, *more}
    assert len(channels["sms"].messages) == 9
    run_tick(ctx, spec, local(0, 12))  # final: the next tick neither retries nor crashes
    assert ledger(sessions)[martian][0] == "failed" and len(channels["sms"].messages) == 9


def test_an_unknown_time_zone_fails_a_step_without_quiet_hours_before_rendering(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """Templates may show times in the customer's zone: the message fails as bad data, and
    the zone's name (the customer's value) is not copied into the reason."""
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: hello, send: sms, template: msg.j2, purpose: notification}",
        template="{{ customer.name }}: {{ event.occurred_at | localtime(customer.timezone) }}",
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    good = shop.customer("张伟")
    martian = shop.customer("火星人", timezone="Mars/Olympus")
    run_tick(ctx, spec, local(0))
    for buyer in (good, martian):
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    rows = ledger(sessions)
    assert rows[martian] == ("failed", "bad_customer_data:timezone", 0)
    assert rows[good] == ("sent", None, 1)
    assert [m.body for m in channels["sms"].messages] == ["张伟: 2026-11-02 10:00"]


def test_an_unknown_time_zone_fails_an_anchored_step_too(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: bday, send: sms, template: msg.j2, at: {from: customer.birthday, annual: true}}",
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    good = shop.customer("张伟")
    martian = shop.customer("火星人", timezone="Mars/Olympus")
    for customer in (good, martian):
        set_column(
            sessions, "UPDATE customers SET birthday = :d WHERE id = :i", d="1990-11-03", i=customer
        )
    run_tick(ctx, spec, local(0))
    for buyer in (good, martian):
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(1, 1))
    rows = ledger(sessions)
    assert rows[martian] == ("failed", "bad_customer_data:timezone", 0)
    assert rows[good] == ("sent", None, 1)


@pytest.mark.parametrize("birthday", ["0001-01-01", "9999-12-31"])
def test_a_date_whose_step_times_overflow_fails_that_customer_only(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop, birthday: str
) -> None:
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: bday, send: sms, template: msg.j2, at: {from: customer.birthday, offset: 2d}}",
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    good, odd = shop.customer("张伟"), shop.customer("李娜")
    set_column(sessions, "UPDATE customers SET birthday = '2026-10-31' WHERE id = :i", i=good)
    set_column(sessions, "UPDATE customers SET birthday = :d WHERE id = :i", d=birthday, i=odd)
    run_tick(ctx, spec, local(0))
    for buyer in (good, odd):
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    rows = ledger(sessions)
    assert rows[odd] == ("failed", "bad_customer_data:birthday", 0)
    assert rows[good] == ("sent", None, 1)


def test_a_date_python_cannot_read_fails_that_customer_only(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """Year 20000: PostgreSQL stores it, SQLite keeps any text; neither reads into Python.
    The batch's customer query fails as a whole, so the step reads it again row by row."""
    channels = recording_channels()
    spec, templates = journey(tmp_path, set(channels), "{id: hello, send: sms, template: msg.j2}")
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyers = [shop.customer(f"顾客{i}") for i in range(5)]
    run_tick(ctx, spec, local(0))
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    set_column(sessions, "UPDATE customers SET birthday = '20000-01-01' WHERE id = :i", i=buyers[2])
    run_tick(ctx, spec, local(0, 11))
    rows = ledger(sessions)
    assert rows.pop(buyers[2]) == ("failed", "bad_customer_data:birthday", 0)
    assert set(rows.values()) == {("sent", None, 1)} and len(rows) == 4


def test_a_batch_where_every_row_fails_alone_fails_the_step_not_every_message(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """When no row of a batch of several reads on its own, the cause is the query or the
    engine, not one customer: the step fails (and is retried), nothing is failed for good."""
    channels = recording_channels()
    spec, templates = journey(tmp_path, set(channels), "{id: hello, send: sms, template: msg.j2}")
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyers = [shop.customer(f"顾客{i}") for i in range(3)]
    run_tick(ctx, spec, local(0))
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    set_column(sessions, "UPDATE customers SET birthday = '20000-01-01'")
    with pytest.raises(Exception, match="(?i)year|date|isoformat"):
        run_tick(ctx, spec, local(0, 11))
    assert ledger(sessions) == {}
    set_column(sessions, "UPDATE customers SET birthday = NULL")  # the data is repaired
    run_tick(ctx, spec, local(0, 12))
    assert set(ledger(sessions).values()) == {("sent", None, 1)}


@pytest.mark.skipif(ON_POSTGRES, reason="PostgreSQL's json type refuses malformed JSON on write")
def test_json_properties_that_do_not_parse_fail_that_customer_only(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: hello, send: sms, template: msg.j2}",
        template="{{ customer.name }}, 领到了 {{ event.properties.coupon | default('券') }}",
        entry="{event: coupon_claimed}",
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyers = [shop.customer(f"顾客{i}") for i in range(3)]
    run_tick(ctx, spec, local(0))
    for i, buyer in enumerate(buyers):
        set_column(
            sessions,
            "INSERT INTO events (customer_id, name, occurred_at, properties)"
            " VALUES (:c, 'coupon_claimed', :at, :p)",
            c=buyer,
            at=local(0, 10).replace(tzinfo=None).isoformat(sep=" "),
            p='{"coupon": "满100减20"}' if i != 1 else '{"coupon": 满100',
        )
    run_tick(ctx, spec, local(0, 11))
    rows = ledger(sessions)
    assert rows.pop(buyers[1]) == ("failed", "bad_customer_data:coupon_claimed.properties", 0)
    assert set(rows.values()) == {("sent", None, 1)}
    assert [m.body for m in channels["sms"].messages] == [
        "顾客0, 领到了 满100减20",
        "顾客2, 领到了 满100减20",
    ]


def test_an_exit_event_that_cannot_be_read_fails_that_customer_only(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """A repurchase whose time is before year 1 (PostgreSQL keeps BC times) or junk text
    (SQLite): the batch's exit query fails, so it is read again customer by customer."""
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: hello, send: sms, template: msg.j2}\n"
        "exit_when: {event: order_paid, where: order_seq >= 2}",
    )
    ctx = EngineContext(sessions, templates, dict(channels), batch_size=3)  # type: ignore[arg-type]
    buyers = [shop.customer(f"顾客{i}") for i in range(5)]
    run_tick(ctx, spec, local(0))
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    shop.order(buyers[0], local(0, 10.5), seq=2)  # a readable repurchase: exits, no row
    unreadable = "0044-03-15 00:00:00 BC" if ON_POSTGRES else "0000-01-01 00:00:00"
    set_column(
        sessions,
        "INSERT INTO orders (order_no, customer_id, paid_at, amount, category, order_seq, store)"
        " VALUES ('BAD1', :c, :at, 1, 'x', 2, 'x')",
        c=buyers[3],
        at=unreadable,
    )
    run_tick(ctx, spec, local(0, 11))
    rows = ledger(sessions)
    assert rows.pop(buyers[3]) == ("failed", "bad_customer_data:exit_when.order_paid", 0)
    assert buyers[0] not in rows
    assert set(rows.values()) == {("sent", None, 1)} and len(rows) == 3


def test_bad_customer_data_does_not_open_the_channels_breaker(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """30 customers with a broken zone are the data's fault, not the channel's."""
    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: hello, send: sms, template: msg.j2}",
        quiet_hours="21:00-09:00",
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyers = [shop.customer(f"顾客{i}", timezone="Mars/Olympus") for i in range(30)]
    run_tick(ctx, spec, local(0))
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    run_tick(ctx, spec, local(0, 11.25))  # the breakers phase looks at the failures
    with sessions() as session:
        assert session.scalars(select(ChannelBreaker.state)).all() == ["closed"]


# --- configuration errors hold, never fail -----------------------------------------------------

BAD_SECRET = {  # channel -> (its secret's environment variable, the sandbox's channel)
    "wecom": ("SIYU_WECOM_CONTACT_SECRET", "wecom"),
    "sms": ("SIYU_ALIYUN_ACCESS_KEY_SECRET", "sms"),
    "service_account": ("SIYU_WECHAT_OA_SECRET", "service_account"),
    "webhook": ("SIYU_WEBHOOK_SECRET", "webhook"),
    "email": ("SIYU_SENDGRID_API_KEY", "email"),
}


def _build(sandbox: RunningSandbox) -> dict[str, Channel]:
    return build_channels(fast_config(), base_url=sandbox.url, seed=5)


def _delivered(client: SandboxClient, channel: str) -> Counter[str]:
    return Counter(
        m["key"] for m in client.messages(channel=channel) if m["status"] in ("sent", "pending")
    )


@pytest.mark.parametrize("name", sorted(BAD_SECRET))
def test_a_wrong_secret_holds_every_message_until_it_is_fixed(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    name: str,
) -> None:
    env, sandbox_channel = BAD_SECRET[name]
    client = SandboxClient(sandbox.url)
    client.reset()
    spec, templates = journey(tmp_path, {name}, f"{{id: hello, send: {name}, template: msg.j2}}")
    identities = ("mobile", "wecom_external_userid", "wechat_openid", "email")
    buyers = [shop.customer(f"顾客{i}", identities=identities) for i in range(12)]

    monkeypatch.setenv(env, "a-wrong-secret-value-123")
    wrong = _build(sandbox)
    ctx = EngineContext(sessions, templates, wrong, batch_size=5)
    run_tick(ctx, spec, local(0))
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    with caplog.at_level(logging.WARNING, logger="siyu.engine"):
        run_tick(ctx, spec, local(0, 11))
        run_tick(ctx, spec, local(0, 11.25))  # within the cool-down: still held, not failed

    rows = ledger(sessions)
    assert len(rows) == 12
    assert {status for status, _, _ in rows.values()} == {"deferred"}, rows
    reasons = Counter(str(reason).split(":")[0] for _, reason, _ in rows.values())
    assert reasons["channel_auth"] >= 1 and set(reasons) <= {"channel_auth", "circuit_open"}
    assert {attempts for _, _, attempts in rows.values()} == {0}, "a wrong secret uses no retry"
    assert _delivered(client, sandbox_channel) == Counter()
    with sessions() as session:
        breaker = session.get(ChannelBreaker, name)
        assert breaker is not None and breaker.state == "open"
        (alert,) = session.scalars(select(AlertEvent).where(AlertEvent.rule == f"circuit:{name}"))
        assert alert.kind == "circuit_opened" and alert.detail["reason"] == "channel_auth"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"channel {name}:" in w and "held" in w for w in warnings)
    assert not any("a-wrong-secret" in w for w in warnings)
    for channel in wrong.values():
        channel.close()

    monkeypatch.delenv(env)  # the operator fixes the secret
    right = _build(sandbox)
    ctx = EngineContext(sessions, templates, right, batch_size=5)
    hour = 11.25
    while hour < 14 and any(s == "deferred" for s, _, _ in ledger(sessions).values()):
        hour += 0.25
        run_tick(ctx, spec, local(0, hour))
    rows = ledger(sessions)
    assert {status for status, _, _ in rows.values()} <= {"sent", "pending"}, rows
    assert {attempts for _, _, attempts in rows.values()} == {1}
    delivered = _delivered(client, sandbox_channel)
    assert len(delivered) == 12 and set(delivered.values()) == {1}, "each message exactly once"
    with sessions() as session:
        assert session.get(ChannelBreaker, name).state == "closed"  # type: ignore[union-attr]
    for channel in right.values():
        channel.close()


def test_a_wrong_secret_mid_batch_holds_the_rest(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """An adapter that sent part of a batch before the key was refused reports `held` for
    the rest: the sent ones are recorded, the held ones keep their attempts."""
    from siyu.channels.base import Receipt

    channels: dict[str, RecordingChannel] = recording_channels()
    spec, templates = journey(tmp_path, set(channels), "{id: hello, send: sms, template: msg.j2}")
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyers = [shop.customer(f"顾客{i}") for i in range(4)]
    run_tick(ctx, spec, local(0))
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    answers = iter(["sent", "sent", "held", "held"])
    channels["sms"].answer = lambda m: Receipt(
        m.idempotency_key,
        next(answers),
        code="SignatureDoesNotMatch",
        auth=True,  # type: ignore[arg-type]
    )
    run_tick(ctx, spec, local(0, 11))
    rows = ledger(sessions)
    assert sorted(rows.values()) == [
        ("deferred", "channel_auth:SignatureDoesNotMatch", 0),
        ("deferred", "channel_auth:SignatureDoesNotMatch", 0),
        ("sent", None, 1),
        ("sent", None, 1),
    ]


def test_held_messages_never_run_out_of_attempts(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """Far more ticks with a refused key than max_attempts: still deferred, never failed."""
    from siyu.channels.base import ChannelError

    channels: dict[str, RecordingChannel] = recording_channels()
    spec, templates = journey(tmp_path, set(channels), "{id: hello, send: sms, template: msg.j2}")
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)

    def refused(_: object) -> Any:
        raise ChannelError(
            "sms",
            "InvalidAccessKeyId.NotFound",
            retryable=False,
            auth=True,
            code="InvalidAccessKeyId.NotFound",
        )

    channels["sms"].answer = refused  # type: ignore[assignment]
    hours = range(11, 11 + 2 * (ctx.max_attempts + 2))  # hourly: each tick past the cool-down
    for hour in hours:
        run_tick(ctx, spec, local(0, hour))
    assert ledger(sessions)[buyer] == (
        "deferred",
        "channel_auth:InvalidAccessKeyId.NotFound",
        0,
    )
    assert len(channels["sms"].calls) >= ctx.max_attempts + 1  # it kept probing
    channels["sms"].answer = None
    run_tick(ctx, spec, local(0, hours[-1] + 1))
    run_tick(ctx, spec, local(0, hours[-1] + 2))
    assert ledger(sessions)[buyer] == ("sent", None, 1)


def test_another_refused_setting_holds_without_opening_the_breaker(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """A template code the provider does not know may be one step's mistake: its messages
    are held (not failed, not counted) with an alert event; the channel stays open for the
    others."""
    from siyu.channels.base import ChannelError

    channels: dict[str, RecordingChannel] = recording_channels()
    spec, templates = journey(tmp_path, set(channels), "{id: hello, send: sms, template: msg.j2}")
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)

    def refused(_: object) -> Any:
        raise ChannelError("sms", "template", retryable=False, code="isv.SMS_TEMPLATE_ILLEGAL")

    channels["sms"].answer = refused  # type: ignore[assignment]
    for hour in range(11, 11 + ctx.max_attempts + 2):
        run_tick(ctx, spec, local(0, hour))
    assert ledger(sessions)[buyer] == ("deferred", "channel_config:isv.SMS_TEMPLATE_ILLEGAL", 0)
    with sessions() as session:
        assert session.scalars(select(ChannelBreaker.state)).all() == ["closed"]
        kinds = session.scalars(select(AlertEvent.kind)).all()
        assert kinds and set(kinds) == {"config_refused"}
    channels["sms"].answer = None  # the template code is corrected
    run_tick(ctx, spec, local(0, 11 + ctx.max_attempts + 2))
    assert ledger(sessions)[buyer] == ("sent", None, 1)


def test_the_auth_codes_are_classified_as_held_configuration() -> None:
    from siyu.channels.errors import (
        Action,
        classify_sendgrid,
        classify_sms,
        classify_webhook,
        classify_wechat,
        classify_wecom,
    )

    for fault in (
        classify_wecom(40001),
        classify_wecom(40014),
        classify_wecom(42001),
        classify_wecom(40125),
        classify_wechat(40001),
        classify_wechat(40125),
        classify_sms("InvalidAccessKeyId", status=404),
        classify_sms("InvalidAccessKeyId.NotFound", status=404),
        classify_sms("SignatureDoesNotMatch", status=400),
        classify_sendgrid(401),
        classify_webhook(401),
        classify_webhook(403),
    ):
        assert fault.auth, fault.code
        assert fault.action in (Action.CONFIG, Action.REFRESH), fault.code
    assert not classify_wecom(40096).auth and not classify_sms("isv.MOBILE_NUMBER_ILLEGAL").auth


def test_a_refused_key_during_the_sms_outid_precheck_holds_the_batch(
    sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """precheck: always looks each message up first; a refused key there holds them all
    instead of a counted `retry` per message (which would end as `failed`)."""
    SandboxClient(sandbox.url).reset()
    monkeypatch.setenv("SIYU_ALIYUN_ACCESS_KEY_SECRET", "a-wrong-secret-value-123")
    channels = build_channels(fast_config(sms={"precheck": "always"}), base_url=sandbox.url)
    from siyu.channels.base import OutboundMessage

    msgs = [OutboundMessage(f"k{i}", i, f"1390013{i:04d}", "您好") for i in range(3)]
    receipts = channels["sms"].send_batch(msgs)
    assert [(r.outcome, r.auth) for r in receipts] == [("held", True)] * 3
    for channel in channels.values():
        channel.close()


def test_explain_survives_an_unknown_time_zone(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    from siyu.reports.explain import explain

    channels = recording_channels()
    spec, templates = journey(
        tmp_path,
        set(channels),
        "{id: hello, send: sms, template: msg.j2}",
        quiet_hours="21:00-09:00",
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    martian = shop.customer("火星人", timezone="Mars/Olympus")
    run_tick(ctx, spec, local(0))
    shop.order(martian, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    with sessions() as session:
        lines = explain(session, spec, martian, local(0, 12))
    said = "\n".join(lines)
    assert "Mars" not in said and "times in Asia/Shanghai" in said
    assert "the customer's timezone cannot be used" in said
