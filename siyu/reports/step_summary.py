"""Per-step outcome counts of a journey, read from the ledger (the source of truth)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.language.spec import JourneySpec
from siyu.storage.models import Delivery, Enrollment


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


def _reason_group(reason: str | None) -> str:
    """Collapse free-text parts: 'render_error: day3.j2:2: ...' → 'render_error'."""
    return (
        (reason or "unknown").split(":")[0]
        if (reason or "").startswith(("render_error", "retry"))
        else (reason or "unknown")
    )


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
    for step_id, status, reason, n in session.execute(
        select(Delivery.step_id, Delivery.status, Delivery.reason, func.count())
        .where(Delivery.journey_name == spec.journey)
        .group_by(Delivery.step_id, Delivery.status, Delivery.reason)
    ):
        summary = steps.get(step_id)
        if summary is None:  # a step removed from the file since
            summary = steps[step_id] = StepSummary(step_id, "?")
        summary.statuses[status] += n
        if status == "skipped":
            summary.skipped[_reason_group(reason)] += n
        elif status == "failed":
            summary.failed[_reason_group(reason)] += n
    return JourneySummary(
        journey=spec.journey,
        enrolled=sum(statuses.values()),
        active=statuses.get("active", 0),
        exited=statuses.get("exited", 0),
        completed=statuses.get("completed", 0),
        goal_reached=goal or 0,
        steps=list(steps.values()),
    )
