"""The send ledger's promises: a crash, a retry or a failing channel never sends twice and
never loses a due message; a failure of one customer's message does not stop the others."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from siyu.channels.base import ChannelError, OutboundMessage, Receipt
from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.storage.models import Delivery, Suppression
from tests.conftest import Shop, canonical_journey, local
from tests.recording_channel import RecordingChannel


def ledger(ctx: EngineContext, step: str) -> list[tuple[int, str, str | None, int]]:
    with ctx.sessions() as session:
        return [
            tuple(r)
            for r in session.execute(  # type: ignore[misc]
                select(Delivery.customer_id, Delivery.status, Delivery.reason, Delivery.attempts)
                .where(Delivery.step_id == step)
                .order_by(Delivery.customer_id)
            )
        ]


def one_step_journey(
    tmp_path: Path, channels: dict[str, RecordingChannel], template: str, channel: str = "sms"
) -> tuple[JourneySpec, Path]:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "msg.j2").write_text(template, encoding="utf-8")
    journey = tmp_path / "j.yaml"
    journey.write_text(
        "journey: one-step\nquiet_hours: null\nentry: {event: order_paid, where: order_seq = 1}\n"
        f"steps:\n  - {{id: hello, send: {channel}, template: msg.j2}}\n",
        encoding="utf-8",
    )
    return load_journey(
        journey, Catalog(set(channels), tmp_path / "templates")
    ), tmp_path / "templates"


def test_a_crash_after_the_ledger_write_resends_with_the_same_key(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)

    def crash(message: OutboundMessage) -> Receipt:
        raise RuntimeError("worker killed mid-send")

    invite = channels["wecom_group_invite"]
    invite.answer = crash
    with pytest.raises(RuntimeError):
        run_tick(ctx, spec, local(0, 10.25))
    assert ledger(ctx, "join-group") == [(buyer, "sending", None, 1)]

    invite.answer = None  # the process restarts; the provider dedupes on the key
    run_tick(ctx, spec, local(0, 10.5))
    run_tick(ctx, spec, local(0, 10.75))
    keys = [m.idempotency_key for m in invite.messages]
    assert len(keys) == 2 and keys[0] == keys[1], "the retry must reuse the idempotency key"
    assert ledger(ctx, "join-group") == [(buyer, "sent", None, 2)]


def test_an_unreachable_channel_defers_then_fails_after_max_attempts(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)

    def down(message: OutboundMessage) -> Receipt:
        raise ChannelError("wecom_group_invite", "connection refused")

    channels["wecom_group_invite"].answer = down
    run_tick(ctx, spec, local(0, 10.25))
    assert ledger(ctx, "join-group") == [(buyer, "deferred", "retry:channel_unavailable", 1)]
    # Backoff: 15 min, 30 min, 1 h, 2 h; each later tick tries again until max_attempts (5).
    for hours in (10.5, 11, 12, 14, 18):
        run_tick(ctx, spec, local(0, hours))
    assert ledger(ctx, "join-group")[0][1] == "failed"
    assert "channel_unavailable after retries" in str(ledger(ctx, "join-group")[0][2])
    assert len(channels["wecom_group_invite"].calls) == 5


def test_a_transient_failure_is_sent_on_a_later_tick(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    flaky = iter([Receipt("", "retry", code="-1", retry_after=600)])

    def answer(message: OutboundMessage) -> Receipt:
        first = next(flaky, None)
        if first is not None:
            return Receipt(
                message.idempotency_key, "retry", code=first.code, retry_after=first.retry_after
            )
        return Receipt(message.idempotency_key, "sent", provider_message_id="ok")

    channels["wecom_group_invite"].answer = answer
    run_tick(ctx, spec, local(0, 10.25))
    run_tick(ctx, spec, local(0, 10.3))  # before the Retry-After: nothing
    assert ledger(ctx, "join-group") == [(buyer, "deferred", "retry:-1", 1)]
    run_tick(ctx, spec, local(0, 10.75))
    assert ledger(ctx, "join-group") == [(buyer, "sent", None, 2)]


def test_a_refusal_suppresses_the_channel_for_later_steps(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    channels["wecom_group_invite"].answer = lambda m: Receipt(
        m.idempotency_key, "refused", code="84061"
    )
    channels["wecom"].answer = channels["wecom_group_invite"].answer
    run_tick(ctx, spec, local(0, 10.25))
    assert ledger(ctx, "join-group") == [(buyer, "skipped", "refused:84061", 1)]
    with ctx.sessions() as session:
        assert session.scalars(select(Suppression.channel)).all() == ["wecom_group_invite"]


def test_a_template_error_fails_one_delivery_and_the_batch_goes_on(
    tmp_path: Path, sessions: object, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    # Indexing an empty name is undefined; StrictUndefined makes it an error, not "先生".
    spec, templates = one_step_journey(tmp_path, channels, "{{ customer.name[0] }}先生您好")
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    good, nameless, also_good = shop.customer("张伟"), shop.customer(""), shop.customer("陈静")
    run_tick(ctx, spec, local(0))
    for buyer in (good, nameless, also_good):
        shop.order(buyer, local(0, 10), seq=1)

    run_tick(ctx, spec, local(0, 11))

    rows = ledger(ctx, "hello")
    assert [(r[0], r[1]) for r in rows] == [
        (good, "sent"),
        (nameless, "failed"),
        (also_good, "sent"),
    ]
    assert "render_error" in str(rows[1][2]) and "msg.j2" in str(rows[1][2])
    assert [m.body for m in channels["sms"].messages] == ["张先生您好", "陈先生您好"]


def test_templates_cannot_reach_python_internals(
    tmp_path: Path, sessions: object, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec, templates = one_step_journey(
        tmp_path, channels, "{{ customer.__class__.__mro__[1].__subclasses__() }}"
    )
    ctx = EngineContext(sessions, templates, dict(channels))  # type: ignore[arg-type]
    buyer = shop.customer()
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 11))
    assert ledger(ctx, "hello")[0][1] == "failed"
    assert channels["sms"].messages == []


def test_a_large_step_is_sent_in_batches_not_one_call_per_customer(
    tmp_path: Path, sessions: object, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec, templates = one_step_journey(tmp_path, channels, "{{ customer.name }}, hi")
    ctx = EngineContext(sessions, templates, dict(channels), batch_size=40)  # type: ignore[arg-type]
    run_tick(ctx, spec, local(0))
    for i in range(250):
        shop.order(shop.customer(f"c{i}"), local(0, 10) + timedelta(seconds=i), seq=1)
    run_tick(ctx, spec, local(0, 11))
    sms = channels["sms"]
    assert len(sms.messages) == 250
    assert len(sms.calls) == 7  # batches of 40 enrollments: 6 × 40 + 10


def test_idempotency_key_is_the_uuid5_of_journey_enrollment_and_step() -> None:
    """The key is written out by hand for speed; it must stay what uuid5 gives, or rows
    inserted before and after a change would disagree with the keys providers have seen."""
    import uuid

    from siyu.engine.ledger import _NAMESPACE, idempotency_key

    for journey, step in (("first-purchase-care", "day3_care"), ("生日", "祝福 1"), ("j", "s")):
        for enrollment_id in (1, 42, 10**9 + 7, *range(1000, 1300)):
            expected = str(uuid.uuid5(_NAMESPACE, f"{journey}/{enrollment_id}/{step}"))
            assert idempotency_key(journey, enrollment_id, step) == expected
