"""Experiment results of one journey, from the database: treated vs holdout (every enrolled
customer counts, in the group the enrollment assigned), and, for each step with variants,
each variant against the first one (customers the variant was delivered to).

Conversion is the journey's goal (`goal_reached_at`). Enrollments whose goal window is
still open count as not converted yet — in both groups alike, so the comparison stays fair,
but rates rise as windows close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from siyu.language.spec import JourneySpec
from siyu.metrics.experiments import Arm, Comparison, compare
from siyu.storage.models import Delivery, Enrollment


@dataclass(frozen=True)
class Experiment:
    name: str  # "holdout" or "<step>: variants"
    comparison: Comparison


def _converted() -> ColumnElement[Any]:
    return func.sum(case((Enrollment.goal_reached_at.is_not(None), 1), else_=0))


def holdout_arms(session: Session, spec: JourneySpec) -> tuple[Arm, Arm]:
    counts = {
        bool(holdout): (int(n), int(won or 0))
        for holdout, n, won in session.execute(
            select(Enrollment.holdout, func.count(), _converted())
            .where(Enrollment.journey_name == spec.journey)
            .group_by(Enrollment.holdout)
        )
    }
    held, treated = counts.get(True, (0, 0)), counts.get(False, (0, 0))
    return Arm("holdout", *held), Arm("treated", *treated)


def variant_arms(session: Session, spec: JourneySpec, step_id: str) -> list[Arm]:
    step = spec.step(step_id)
    order = [v.id for v in step.variants or []]
    counts = {
        variant: (int(n), int(won or 0))
        for variant, n, won in session.execute(
            select(Delivery.variant, func.count(), _converted())
            .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(
                Delivery.journey_name == spec.journey,
                Delivery.step_id == step_id,
                Delivery.status == "sent",
                Delivery.variant.is_not(None),
            )
            .group_by(Delivery.variant)
        )
    }
    return [Arm(v, *counts.get(v, (0, 0))) for v in order]


def experiment_results(session: Session, spec: JourneySpec) -> list[Experiment]:
    if spec.goal is None:
        return []
    found: list[Experiment] = []
    holdout, treated = holdout_arms(session, spec)
    if spec.holdout > 0 or holdout.n:
        found.append(Experiment("treated vs holdout", compare(holdout, treated)))
    for step in spec.steps:
        if not step.variants or len(step.variants) < 2:
            continue
        arms = variant_arms(session, spec, step.id)
        for other in arms[1:]:
            found.append(
                Experiment(f"{step.id}: {other.name} vs {arms[0].name}", compare(arms[0], other))
            )
    return found
