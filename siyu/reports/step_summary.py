"""Per-step outcome counts of a journey, read from the ledger (the source of truth)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.language.spec import JourneySpec
from siyu.storage.models import (
    Delivery,
    DeliveryStatus,
    Enrollment,
    reason_group,
)


@dataclass
class StepSummary:
    step_id: str
    channel: str
    statuses: Counter[str] = field(default_factory=Counter)  # sent, pending, failed, deferred
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    failed: Counter[str] = field(default_factory=Counter)  # by reason


@dataclass
class JourneySummary:
    journey: str
    enrolled: int
    active: int
    exited: int
    completed: int
    goal_reached: int
    steps: list[StepSummary]


def summarize(session: Session, spec: JourneySpec) -> JourneySummary:
    statuses = dict(
        session.execute(
            select(Enrollment.status, func.count())
            .where(Enrollment.journey_name == spec.journey)
            .group_by(Enrollment.status)
        )
        .tuples()
        .all()
    )
    goal = session.scalar(
        select(func.count()).where(
            Enrollment.journey_name == spec.journey, Enrollment.goal_reached_at.is_not(None)
        )
    )
    steps = {s.id: StepSummary(s.id, s.send) for s in spec.steps}
    for step_id, status, code, detail, n in session.execute(
        select(
            Delivery.step_id,
            Delivery.status,
            Delivery.reason_code,
            Delivery.reason_detail,
            func.count(),
        )
        .where(Delivery.journey_name == spec.journey)
        .group_by(Delivery.step_id, Delivery.status, Delivery.reason_code, Delivery.reason_detail)
    ):
        summary = steps.get(step_id)
        if summary is None:  # a step removed from the file since
            summary = steps[step_id] = StepSummary(step_id, "?")
        summary.statuses[str(status)] += n
        if status == DeliveryStatus.SKIPPED:
            summary.skipped[reason_group(code, detail)] += n
        elif status == DeliveryStatus.FAILED:
            summary.failed[reason_group(code, detail)] += n
    return JourneySummary(
        journey=spec.journey,
        enrolled=sum(statuses.values()),
        active=statuses.get("active", 0),
        exited=statuses.get("exited", 0),
        completed=statuses.get("completed", 0),
        goal_reached=goal or 0,
        steps=list(steps.values()),
    )
