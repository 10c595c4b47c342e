"""Two workers on the same journey at once (two ticks in threads, each with its own engine
context, sharing the database and the provider): every due message is sent exactly once,
counted by idempotency key at the provider; none is missing; nobody is enrolled twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import OutboundMessage, Receipt
from siyu.engine.context import EngineContext
from siyu.engine.tick import run_tick
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.storage.models import Delivery, Enrollment
from tests.conftest import Shop, local
from tests.recording_channel import RecordingChannel, recording_channels

CUSTOMERS = 240


class SlowProvider(RecordingChannel):
    """A provider that takes a moment per call, so the two workers' batches interleave; it
    records from several threads (list.append is atomic)."""

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        time.sleep(0.002)
        return super().send_batch(messages)


def webhook_journey(tmp_path: Path) -> JourneySpec:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hi.j2").write_text("{{ customer.name }}，您好", encoding="utf-8")
    path = tmp_path / "j.yaml"
    path.write_text(
        "journey: concurrent\nquiet_hours: null\n"
        "entry: {event: order_paid, where: order_seq = 1}\n"
        "steps:\n  - {id: hello, send: webhook, template: hi.j2, purpose: notification}\n",
        encoding="utf-8",
    )
    return load_journey(path, Catalog(set(recording_channels()), tmp_path / "templates"))


def contexts(
    sessions: sessionmaker[Session], templates: Path, provider: RecordingChannel
) -> tuple[EngineContext, EngineContext]:
    def one() -> EngineContext:
        channels = dict(recording_channels())
        channels["webhook"] = provider
        return EngineContext(sessions, templates, channels, batch_size=20)  # type: ignore[arg-type]

    return one(), one()


def run_together(*runs: tuple[EngineContext, JourneySpec, datetime]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(runs))

    def work(ctx: EngineContext, spec: JourneySpec, now: datetime) -> None:
        start.wait()
        try:
            run_tick(ctx, spec, now)
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def buyers(shop: Shop, n: int) -> list[int]:
    ids = []
    for i in range(n):
        customer = shop.customer(f"顾客{i}", identities=())
        shop.order(customer, local(0, 10), seq=1)
        ids.append(customer)
    return ids


def test_two_ticks_at_once_enroll_and_send_each_message_exactly_once(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    spec = webhook_journey(tmp_path)
    provider = SlowProvider("webhook", "customer_id")
    first, second = contexts(sessions, tmp_path / "templates", provider)
    run_tick(first, spec, local(0))  # activation, before anyone bought
    customers = buyers(shop, CUSTOMERS)

    # the same `now` and a slightly later one: both ticks see every row as due
    run_together((first, spec, local(0, 11)), (second, spec, local(0, 11.05)))

    per_key = Counter(m.idempotency_key for m in provider.messages)
    assert len(per_key) == CUSTOMERS and set(per_key.values()) == {1}
    assert sorted(m.customer_id for m in provider.messages) == customers
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == CUSTOMERS
        statuses = Counter(session.scalars(select(Delivery.status)))
    assert statuses == {"sent": CUSTOMERS}


def test_retries_claimed_by_two_workers_are_sent_once_each(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """Deferred rows (a failed first attempt) are existing rows: the claim locks them."""
    spec = webhook_journey(tmp_path)
    # Every first attempt fails here, which would (rightly) open the channel's circuit breaker
    # and hold the retries; this test is about claiming, so the breaker needs more attempts
    # than the test makes (tests/measure covers the breaker).
    (tmp_path / "alerts.yaml").write_text("breaker: {min_attempts: 100000}\n", encoding="utf-8")
    provider = SlowProvider("webhook", "customer_id")
    provider.answer = lambda m: Receipt(m.idempotency_key, "retry", code="500", retry_after=60)
    first, second = contexts(sessions, tmp_path / "templates", provider)
    run_tick(first, spec, local(0))
    buyers(shop, CUSTOMERS)
    run_tick(first, spec, local(0, 11))
    assert len(provider.messages) == CUSTOMERS
    provider.answer, provider.calls = None, []

    run_together((first, spec, local(0, 12)), (second, spec, local(0, 12)))

    per_key = Counter(m.idempotency_key for m in provider.messages)
    assert len(per_key) == CUSTOMERS and set(per_key.values()) == {1}
    with sessions() as session:
        rows = session.execute(select(Delivery.status, Delivery.attempts)).all()
    assert Counter(tuple(r) for r in rows) == {("sent", 2): CUSTOMERS}


def test_a_live_workers_in_flight_batch_is_not_sent_again_by_another(
    tmp_path: Path, sessions: sessionmaker[Session], shop: Shop
) -> None:
    """Worker A is stuck inside the channel call; worker B ticks a minute later (within A's
    lease) and must leave A's `sending` rows alone; A then finishes: one message each."""
    spec = webhook_journey(tmp_path)
    stuck, release = threading.Event(), threading.Event()

    class StuckProvider(SlowProvider):
        def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
            if threading.current_thread().name == "worker-a":
                stuck.set()
                release.wait(30)
            return super().send_batch(messages)

    provider = StuckProvider("webhook", "customer_id")
    first, second = contexts(sessions, tmp_path / "templates", provider)
    first.batch_size = CUSTOMERS
    run_tick(first, spec, local(0))
    buyers(shop, 30)
    worker_a = threading.Thread(target=run_tick, args=(first, spec, local(0, 11)), name="worker-a")
    worker_a.start()
    assert stuck.wait(30)
    counts = run_tick(second, spec, local(0, 11) + first.send_lease / 10)
    assert provider.messages == [] and not counts["hello"]
    release.set()
    worker_a.join(30)
    per_key = Counter(m.idempotency_key for m in provider.messages)
    assert len(per_key) == 30 and set(per_key.values()) == {1}
