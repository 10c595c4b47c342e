"""The per-tick scans, reshaped for speed (siyu/engine/scans.py, complete_finished), return exactly
what their former, plainer SQL returned: that SQL is kept here as the reference and both are
run over a ledger holding every kind of row."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import product
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.completion import complete_finished
from siyu.engine.scans import due_id_span
from siyu.engine.send_step import Partition, due_from_row, select_due
from siyu.engine.step_facts import Due
from siyu.language.spec import Anchor, JourneySpec, Step
from siyu.storage.models import Delivery, Enrollment, Journey
from tests.conftest import DAY0, Shop, canonical_journey, local
from tests.recording_channel import RecordingChannel

STEP_STATES: list[tuple[str | None, float | None]] = [
    (None, None),  # no ledger row for the step
    ("sent", None),
    ("skipped", None),
    ("failed", None),
    ("pending", None),
    ("deferred", -1.0),  # claimable again an hour before `now`
    ("deferred", 0.0),  # claimable exactly at `now`
    ("deferred", 2.0),  # not yet
    ("sending", -0.5),  # lease over: sent again
    ("sending", 0.5),  # lease running
]


def _ledger(sessions: sessionmaker[Session], shop: Shop, spec: JourneySpec) -> None:
    """Two versions of the journey and another journey; enrollments of every status and age,
    with rows for one to all of the steps, each in one of the states above (rotating)."""
    now = local(20, 12)
    customers = [shop.customer() for _ in range(6)]
    with sessions() as session, session.begin():
        versions = [
            Journey(
                name=name,
                version=version,
                spec_hash="x",
                spec={},
                activated_at=DAY0,
                created_at=DAY0,
            )
            for name, version in ((spec.journey, 1), (spec.journey, 2), ("other", 1))
        ]
        session.add_all(versions)
        session.flush()
        n = 0
        for journey, status, age_hours in product(
            versions, ("active", "exited", "completed"), (1, 25, 24 * 7 + 1, 24 * 15, 24 * 19)
        ):
            for shift in range(len(STEP_STATES)):
                n += 1
                entered = now - timedelta(hours=age_hours)
                enrollment = Enrollment(
                    journey_id=journey.id,
                    journey_name=journey.name,
                    customer_id=customers[n % len(customers)],
                    entry_key=f"order:{n}",
                    entered_at=entered,
                    enrolled_at=entered,
                    status=status,
                    holdout=n % 7 == 0,
                )
                session.add(enrollment)
                session.flush()
                for index, step in enumerate(spec.steps):
                    state, next_in = STEP_STATES[(shift + index) % len(STEP_STATES)]
                    if state is None or index > n % len(spec.steps):  # 1 to 4 rows
                        continue
                    session.add(
                        Delivery(
                            enrollment_id=enrollment.id,
                            journey_name=journey.name,
                            step_id=step.id,
                            customer_id=enrollment.customer_id,
                            channel=step.send,
                            status=state,
                            attempts=n % 3,
                            idempotency_key=f"key-{n}-{step.id}",
                            due_at=entered,
                            next_attempt_at=None
                            if next_in is None
                            else now + timedelta(hours=next_in),
                            created_at=entered,
                            updated_at=entered,
                        )
                    )


def _former_select_due(
    session: Session,
    spec: JourneySpec,
    step: Step,
    now: datetime,
    journey_id: int | None,
    *,
    after: int,
    limit: int,
    partition: Partition,
) -> list[Due]:
    """select_due as it was: one outer join of enrollments to the step's ledger rows."""
    conditions: list[Any] = [
        Enrollment.journey_name == spec.journey,
        Enrollment.status == "active",
        Enrollment.id > after,
        or_(
            Delivery.id.is_(None),
            and_(Delivery.status.in_(("deferred", "sending")), Delivery.next_attempt_at <= now),
        ),
    ]
    if journey_id is not None:
        conditions.append(Enrollment.journey_id == journey_id)
    if partition.count > 1:
        conditions.append(Enrollment.id % partition.count == partition.index)
    if not isinstance(step.at, Anchor):
        conditions.append(Enrollment.entered_at <= now - step.at)
    query = (
        select(
            Enrollment.id,
            Enrollment.customer_id,
            Enrollment.entered_at,
            Enrollment.entry_key,
            Enrollment.holdout,
            Delivery.id,
            Delivery.attempts,
            Delivery.idempotency_key,
        )
        .outerjoin(
            Delivery, and_(Delivery.enrollment_id == Enrollment.id, Delivery.step_id == step.id)
        )
        .where(*conditions)
        .order_by(Enrollment.id)
        .limit(limit)
    )
    return [due_from_row(spec, step, r) for r in session.execute(query)]


def test_select_due_returns_what_the_outer_join_returned(
    sessions: sessionmaker[Session], shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    anchored = spec.steps[1].model_copy(update={"at": Anchor(from_="customer.birthday")})
    _ledger(sessions, shop, spec)
    with sessions() as session:
        first, second = session.scalars(
            select(Journey.id).where(Journey.name == spec.journey).order_by(Journey.version)
        ).all()
        seen = 0
        for step, now, journey_id, partition, after, limit in product(
            [*spec.steps, anchored],
            (local(20, 12), local(20, 12) - timedelta(minutes=30), local(30)),
            (None, first, second),
            (Partition(), Partition(0, 2), Partition(1, 3)),
            (0, 40),
            (7, 10_000),
        ):
            arguments: dict[str, Any] = dict(after=after, limit=limit, partition=partition)
            expected = _former_select_due(session, spec, step, now, journey_id, **arguments)
            assert select_due(session, spec, step, now, journey_id, **arguments) == expected
            if not isinstance(step.at, Anchor):  # as run_step bounds a timed step's scan
                span = due_id_span(session, spec.journey, now - step.at, journey_id)
                bounded = (
                    []
                    if span is None
                    else select_due(
                        session,
                        spec,
                        step,
                        now,
                        journey_id,
                        after=max(after, span[0] - 1),
                        limit=limit,
                        upto=span[1],
                        partition=partition,
                    )
                )
                assert bounded == expected
            seen += len(expected)
    assert seen > 1000  # the ledger above does exercise both parts


def test_complete_marks_what_the_ledger_wide_group_by_marked(
    sessions: sessionmaker[Session], shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    _ledger(sessions, shop, spec)
    with sessions() as session, session.begin():
        final = (
            select(Delivery.enrollment_id)
            .where(
                Delivery.journey_name == spec.journey,
                Delivery.status.in_(("sent", "failed", "skipped")),
            )
            .group_by(Delivery.enrollment_id)
            .having(func.count() >= len(spec.steps) - 2)  # the reference: former form
        )
        versions = select(Journey.id).where(Journey.name == spec.journey)
        expected = set(
            session.scalars(
                select(Enrollment.id).where(
                    Enrollment.journey_id.in_(versions),
                    Enrollment.status == "active",
                    Enrollment.id.in_(final),
                )
            )
        )
        # Two steps fewer, so that the rotating states above complete some enrollments; the
        # stored specs of both versions say the same.
        short = spec.model_copy(update={"steps": spec.steps[:-2]})
        stored = short.model_dump(mode="json", by_alias=True)
        session.execute(update(Journey).where(Journey.id.in_(versions)).values(spec=stored))
        completed = select(Enrollment.id).where(Enrollment.status == "completed")
        before = set(session.scalars(completed))
        # every enrollment old enough for the last step (completion ignores younger ones)
        later = local(20, 12) + timedelta(days=365)
        assert complete_finished(session, short, later) == len(expected) > 0
        assert set(session.scalars(completed)) - before == expected
