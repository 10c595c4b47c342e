"""The channel circuit breaker: 30 % failures open it, later messages are deferred (not
lost), and after the cool-down a half-open probe closes it and the held messages go out."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import OutboundMessage, Receipt
from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.storage.models import AlertEvent, ChannelBreaker, Delivery
from tests.conftest import Shop, local
from tests.journey_files import write_journey
from tests.recording_channel import RecordingChannel

JOURNEY = """\
journey: breaker
quiet_hours: null
entry: {event: order_paid, where: order_seq = 1}
steps:
  - {id: hello, send: sms, template: hello.j2, purpose: notification}
"""


def statuses(sessions: sessionmaker[Session], customers: list[int]) -> list[tuple[str, str]]:
    with sessions() as session:
        return [
            (row[0], (row[1] or "").split(":")[0])
            for row in session.execute(
                select(Delivery.status, Delivery.reason)
                .where(Delivery.customer_id.in_(customers))
                .order_by(Delivery.customer_id)
            )
        ]


def test_failures_open_the_breaker_hold_sends_and_a_probe_closes_it(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    channels: dict[str, RecordingChannel],
) -> None:
    spec = write_journey(tmp_path, channels, JOURNEY)
    ctx = EngineContext(sessions, tmp_path / "templates", dict(channels))  # type: ignore[arg-type]
    sms = channels["sms"]
    healthy = sms.answer

    def flaky(message: OutboundMessage) -> Receipt:  # 3 in 10 fail, for good
        if message.customer_id % 10 < 3:
            return Receipt(message.idempotency_key, "failed", code="isv.BUSINESS_LIMIT_CONTROL")
        return Receipt(message.idempotency_key, "sent")

    sms.answer = flaky
    run_tick(ctx, spec, local(0, 9))  # switched on
    first = [shop.customer(f"甲{i}") for i in range(40)]
    for customer in first:
        shop.order(customer, local(0, 9.5), seq=1)
    run_tick(ctx, spec, local(0, 10))
    assert len(sms.messages) == 40
    assert sum(1 for s, _ in statuses(sessions, first) if s == "failed") >= 6  # > 15 %

    later = [shop.customer(f"乙{i}") for i in range(20)]
    for customer in later:
        shop.order(customer, local(0, 10.1), seq=1)
    counts = run_tick(ctx, spec, local(0, 10.2))
    assert counts["breakers"] == {"open:sms": 1}
    assert len(sms.messages) == 40, "nothing is sent while the breaker is open"
    assert statuses(sessions, later) == [("deferred", "circuit_open")] * 20

    sms.answer = healthy  # the provider recovers
    run_tick(ctx, spec, local(0, 10.5))  # still cooling down (30 min): held rows not due
    assert len(sms.messages) == 40
    counts = run_tick(ctx, spec, local(0, 10.8))  # cool-down over: half-open, 10 probes
    assert counts["breakers"] == {"half_open:sms": 1}
    assert len(sms.messages) == 50
    counts = run_tick(ctx, spec, local(0, 11.1))  # the probes went through: closed
    assert not counts["breakers"]
    assert len(sms.messages) == 60
    assert statuses(sessions, later) == [("sent", "")] * 20
    with sessions() as session:
        kinds = session.scalars(select(AlertEvent.kind).order_by(AlertEvent.id)).all()
        breaker = session.get(ChannelBreaker, "sms")
    assert kinds == ["circuit_opened", "circuit_closed"]
    assert breaker is not None and breaker.state == "closed"


def test_two_ticks_creating_a_channels_breaker_at_once_both_go_on(
    sessions: sessionmaker[Session],
) -> None:
    """Two journeys' ticks on a fresh database both create the SMS breaker: the second waits
    for the first's transaction and creates nothing, instead of failing its tick on the
    breaker's key (found by two tick processes started together)."""
    import threading

    from siyu.alerts.breaker import evaluate_breakers
    from siyu.alerts.config import Breaker

    created, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with sessions() as session, session.begin():
            evaluate_breakers(session, ["sms"], Breaker(), local(0))
            created.set()
            release.wait(10)  # commits only after the second has started its own

    def second() -> None:
        created.wait(10)
        try:
            with sessions() as session, session.begin():
                evaluate_breakers(session, ["sms"], Breaker(), local(0))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    created.wait(10)
    threading.Timer(0.5, release.set).start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with sessions() as session:
        assert [b.state for b in session.scalars(select(ChannelBreaker))] == ["closed"]
