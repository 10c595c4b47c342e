"""The funnel of a journey, read from the ledger, the enrollments and the click events.

Per step (and per variant of the step):
    due         ledger rows written (the step came due for an enrolled customer)
    sent        handed to the channel (sent, awaiting confirmation, or failed by the provider)
    delivered   the provider accepted it (`sent`; a WeCom mass message once a staff confirmed)
    failed      failed, by reason (render errors included)
    skipped     by reason (holdout, expired, no_consent, ...)
    deferred    waiting now (quiet hours, caps, retry, circuit_open...)
    clicked     customers who clicked one of the step's tracked links
    goal        customers delivered this step who reached the journey's goal after it

Per day (the journey's time zone): messages sent by channel and by step, enrollments, and
goals of each entry day (treated and held out).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Delivery, Enrollment, Event
from siyu.language.spec import JourneySpec
from siyu.reports.step_summary import _reason_group

ATTEMPTED = ("sent", "pending")


@dataclass
class Stage:
    """Counts of one step, or of one variant of a step."""

    due: int = 0
    sent: int = 0
    delivered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    clicked: int = 0
    goal: int = 0

    def as_row(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": sum(self.failed.values()),
            "skipped": sum(self.skipped.values()),
            "deferred": sum(self.deferred.values()),
            "clicked": self.clicked,
            "goal": self.goal,
        }


@dataclass
class StepFunnel:
    step_id: str
    channel: str
    total: Stage = field(default_factory=Stage)
    variants: dict[str, Stage] = field(default_factory=dict)


@dataclass
class DayRow:
    day: date
    sent_by_channel: Counter[str] = field(default_factory=Counter)
    sent_by_step: Counter[str] = field(default_factory=Counter)
    enrolled: int = 0
    enrolled_treated: int = 0
    enrolled_holdout: int = 0
    goal_treated: int = 0  # of the customers who entered that day
    goal_holdout: int = 0


@dataclass
class Funnel:
    journey: str
    enrolled: int
    holdout: int
    goal_reached: int
    goal_treated: int
    goal_holdout: int
    steps: list[StepFunnel]
    days: list[DayRow]


def build_funnel(session: Session, spec: JourneySpec) -> Funnel:
    zone = ZoneInfo(spec.timezone)
    enrollments = session.execute(
        select(
            Enrollment.id,
            Enrollment.customer_id,
            Enrollment.entered_at,
            Enrollment.holdout,
            Enrollment.goal_reached_at,
        ).where(Enrollment.journey_name == spec.journey)
    ).all()
    goal_at = {row[0]: row[4] for row in enrollments}
    days: dict[date, DayRow] = {}

    def day_row(moment: datetime) -> DayRow:
        day = moment.astimezone(zone).date()
        return days.setdefault(day, DayRow(day))

    for _id, _customer, entered_at, holdout, reached in enrollments:
        row = day_row(entered_at)
        row.enrolled += 1
        if holdout:
            row.enrolled_holdout += 1
            row.goal_holdout += reached is not None
        else:
            row.enrolled_treated += 1
            row.goal_treated += reached is not None

    clicks = _clicks(session, spec.journey)
    steps = {s.id: StepFunnel(s.id, s.send) for s in spec.steps}
    for (
        enrollment_id,
        customer_id,
        step_id,
        channel,
        status,
        reason,
        variant,
        sent_at,
    ) in session.execute(
        select(
            Delivery.enrollment_id,
            Delivery.customer_id,
            Delivery.step_id,
            Delivery.channel,
            Delivery.status,
            Delivery.reason,
            Delivery.variant,
            Delivery.sent_at,
        ).where(Delivery.journey_name == spec.journey)
    ):
        funnel = steps.setdefault(step_id, StepFunnel(step_id, channel))
        stages = [funnel.total]
        if variant:
            stages.append(funnel.variants.setdefault(variant, Stage()))
        reached = goal_at.get(enrollment_id)
        # a customer gets one variant of a step, so a click on the step's link is that variant's
        clicked = customer_id in clicks.get(step_id, set())
        for stage in stages:
            _count(stage, status, reason, sent_at, reached, clicked)
        if status == "sent" and sent_at is not None:
            row = day_row(sent_at)
            row.sent_by_channel[channel] += 1
            row.sent_by_step[step_id] += 1
    return Funnel(
        journey=spec.journey,
        enrolled=len(enrollments),
        holdout=sum(1 for row in enrollments if row[3]),
        goal_reached=sum(1 for row in enrollments if row[4] is not None),
        goal_treated=sum(1 for row in enrollments if row[4] is not None and not row[3]),
        goal_holdout=sum(1 for row in enrollments if row[4] is not None and row[3]),
        steps=list(steps.values()),
        days=[days[d] for d in sorted(days)],
    )


def _count(
    stage: Stage,
    status: str,
    reason: str | None,
    sent_at: datetime | None,
    goal_at: datetime | None,
    clicked: bool,
) -> None:
    stage.due += 1
    if status in ATTEMPTED or (status == "failed" and not (reason or "").startswith("render")):
        stage.sent += 1
    if status == "sent":
        stage.delivered += 1
        stage.clicked += clicked
        stage.goal += goal_at is not None and sent_at is not None and goal_at >= sent_at
    elif status == "failed":
        stage.failed[_reason_group(reason)] += 1
    elif status == "skipped":
        stage.skipped[_reason_group(reason)] += 1
    elif status == "deferred":
        stage.deferred[(reason or "unknown").split(":")[0]] += 1


def _clicks(session: Session, journey: str) -> dict[str, set[int]]:
    """Customers who clicked a tracked link of the journey, by step."""
    found: dict[str, set[int]] = defaultdict(set)
    for customer_id, properties in session.execute(
        select(Event.customer_id, Event.properties).where(Event.name == "link_clicked")
    ):
        if not isinstance(properties, dict) or properties.get("journey") != journey:
            continue
        found[str(properties.get("step"))].add(customer_id)
    return found
