"""The reference a backtest's moments are compared against (siyu.simulate.moments): the
engine's tick at every minute over a copy of the database, and the journey's state (every
ledger row and enrollment, with every time the engine wrote) to compare."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from siyu.engine.context import EngineContext
from siyu.engine.event_sources import LATE_EVENTS
from siyu.engine.tick import run_tick
from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.language.spec import JourneySpec
from siyu.policies import Policies
from siyu.simulate.dry_run import dry_run_channels
from siyu.simulate.scratch import copy_database
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Delivery, Enrollment
from tests.tools.project_files import ROOT

Rows = list[tuple[object, ...]]


def state(url: str, journey: str = "minute-moments") -> tuple[Rows, Rows]:
    """Every ledger row and enrollment of the journey, with every time the engine wrote."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            ledger = session.execute(
                select(
                    Delivery.customer_id, Delivery.step_id, Delivery.status,
                    Delivery.reason_code, Delivery.reason_detail, Delivery.due_at,
                    Delivery.sent_at, Delivery.next_attempt_at, Delivery.attempts,
                    Delivery.created_at, Delivery.updated_at, Delivery.channel,
                )
                .where(Delivery.journey_name == journey)
                .order_by(Delivery.customer_id, Delivery.step_id, Delivery.due_at, Delivery.id)
            ).all()  # fmt: skip
            enrollments = session.execute(
                select(
                    Enrollment.customer_id, Enrollment.entry_key, Enrollment.status,
                    Enrollment.entered_at, Enrollment.enrolled_at, Enrollment.goal_reached_at,
                    Enrollment.exited_at, Enrollment.exit_reason, Enrollment.holdout,
                )
                .where(Enrollment.journey_name == journey)
                .order_by(Enrollment.customer_id, Enrollment.entered_at)
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    return [tuple(r) for r in ledger], [tuple(r) for r in enrollments]


def every_minute(
    url: str,
    copy: Path,
    journey: JourneySpec,
    start: datetime,
    end: datetime,
    policies: Policies | None = None,
    late_events: timedelta = LATE_EVENTS,
) -> None:
    """The reference: the engine's tick at each minute from `start` to `end`, on a copy."""
    engine = make_engine(copy_database(url, copy))
    try:
        ctx = EngineContext(
            make_sessionmaker(engine),
            ROOT / "templates",
            dict(dry_run_channels(STANDARD_CHANNELS)),  # type: ignore[arg-type]
            policies=policies or Policies(),
            late_events=late_events,
        )
        now = start
        while now <= end:
            run_tick(ctx, journey, now)
            now += timedelta(minutes=1)
    finally:
        engine.dispose()
