"""Opening a channel's breaker inside a Prefect run emits a Prefect event automations can
act on (siyu.channel.circuit.opened, resource siyu.channel.<name>)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

import tasks  # noqa: F401  (the Prefect layer plugs its event emission into the breaker)
from siyu.alerts.breaker import evaluate_breakers
from siyu.alerts.config import Breaker
from siyu.storage.models import ReasonCode
from tests.conftest import Shop, local
from tests.measure.ledger_rows import Row, write_rows

NOW = local(3, 12)


def seed_failures(sessions: sessionmaker[Session], customer: int) -> None:
    """5 provider failures among 20 SMS attempts in the last hour."""
    at = NOW - timedelta(minutes=5)
    down = "isp.SYSTEM_ERROR: down"
    failed = Row(customer, "sms", "failed", at, ReasonCode.PROVIDER_FAILED, down)
    write_rows(sessions, [failed] * 5 + [Row(customer, "sms", "sent", at)] * 15)


def read_events(name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    query = EventFilter(
        event=EventNameFilter(name=[name]),
        occurred=EventOccurredFilter(since=NOW - timedelta(hours=1), until=NOW + timedelta(1)),
    )
    with get_client(sync_client=True) as client:
        return list(client.read_events(filter=query, limit=50).events)


def test_opening_a_breaker_in_a_flow_run_emits_a_prefect_event(
    prefect_harness: None, sessions: sessionmaker[Session], shop: Shop
) -> None:
    from prefect import flow

    seed_failures(sessions, shop.customer())

    @flow(name="breaker-check")
    def check() -> dict[str, str]:
        with sessions() as session, session.begin():
            return evaluate_breakers(session, ["sms"], Breaker(), NOW)

    assert check() == {"sms": "open"}  # 5 of 20 failed: 25 % > 15 %
    deadline = time.monotonic() + 20
    events = read_events("siyu.channel.circuit.opened")
    while not events and time.monotonic() < deadline:  # events are written asynchronously
        time.sleep(0.5)
        events = read_events("siyu.channel.circuit.opened")
    assert len(events) == 1
    assert events[0].resource.id == "siyu.channel.sms"
    assert events[0].payload["failure_rate"] == "0.25"
