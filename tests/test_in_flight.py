"""A tick that leaves messages in flight says so: an attempt claimed them (`sending`, under a
lease) and did not finish, e.g. its database connection died and Prefect's retry of the step
succeeded for the rest. The run's results and logs name how many and until when; once the
lease ends, a later tick sends them and reports none."""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.context import EngineContext
from siyu.engine.receipts import TAKEN_OVER
from siyu.engine.tick import tick_phases
from siyu.engine.versions import ensure_journey
from siyu.metrics.tick_summary import IN_FLIGHT_MINUTES, TAKEN_OVER_LABEL, tick_markdown
from siyu.storage.models import Customer, Delivery, DeliveryStatus, Enrollment
from tests.conftest import canonical_journey, local

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_a_tick_that_leaves_messages_in_flight_says_so(
    ctx: EngineContext, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    spec = canonical_journey(ctx.channels)  # type: ignore[arg-type]
    now = local(1, 11)
    lease_end = now + timedelta(minutes=10)
    with sessions.begin() as session:
        journey_id = ensure_journey(session, spec, local(0)).id
        session.add(Customer(id=1, name="顾客", timezone="Asia/Shanghai", created_at=local(0)))
        session.flush()
        session.add(
            Enrollment(
                id=1, journey_id=journey_id, journey_name=spec.journey, customer_id=1,
                entry_key="order:1", entered_at=local(0), enrolled_at=local(0),
            )
        )  # fmt: skip
        session.flush()
        session.add(  # claimed by an attempt that never recorded its receipt
            Delivery(
                enrollment_id=1, journey_name=spec.journey, step_id="day3-care", customer_id=1,
                channel="wecom", status=DeliveryStatus.SENDING, idempotency_key="k-1",
                attempts=1, due_at=local(1), next_attempt_at=lease_end, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
    complete = next(phase for phase in tick_phases(spec) if phase.name == "complete")

    with caplog.at_level(logging.WARNING, logger="siyu"):
        result = complete.run(ctx, spec, now)
    assert result["in_flight"] == 1
    assert result["in_flight_minutes_left"] == 10
    assert "first-purchase-care: 1 message(s) still in flight" in caplog.text
    assert lease_end.isoformat(timespec="seconds").removesuffix("+00:00") in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="siyu"):
        after_lease = complete.run(ctx, spec, lease_end + timedelta(minutes=1))
    assert "in_flight" not in after_lease.labels()
    assert "in flight" not in caplog.text


def test_the_ticks_summary_warns_of_messages_in_flight_and_shows_them_settled_later(
    ctx: EngineContext,
) -> None:
    """The run's markdown artifact: the warning with when the lease ends, in the journey's
    zone; the next tick's artifact: how many of them it took over."""
    spec = canonical_journey(ctx.channels)  # type: ignore[arg-type]
    now = local(1, 11)  # 11:00 in Shanghai
    left = tick_markdown(
        spec, now, {"day3-care": {"sent": 4}, "complete": {"in_flight": 2, IN_FLIGHT_MINUTES: 10}}
    )
    assert "**Warning: 2 message(s) still in flight.**" in left
    assert (
        "lease ends at "
        + (now + timedelta(minutes=10)).astimezone(SHANGHAI).isoformat(timespec="minutes")
        in left
    )
    settled = tick_markdown(
        spec,
        now + timedelta(minutes=15),
        {"day3-care": {"sent": 2, TAKEN_OVER_LABEL: 2}, "complete": {"completed": 0}},
    )
    assert "Warning" not in settled
    assert "2 message(s) an earlier tick left in flight were taken over by this one" in settled
    assert TAKEN_OVER.label == TAKEN_OVER_LABEL
