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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.language.spec import JourneySpec
from siyu.storage.models import (
    Delivery,
    DeliveryStatus,
    Enrollment,
    Event,
    ReasonCode,
    reason_group,
)

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


def build_funnel(session: Session, spec: JourneySpec, *, by_day: bool = True) -> Funnel:
    """The funnel, aggregated in SQL (one GROUP BY per figure), so it stays cheap on a large
    ledger; `by_day=False` leaves out the daily rows (the per-tick summary)."""
    enrolled = {
        (bool(holdout), reached): int(n)
        for holdout, reached, n in session.execute(
            select(
                Enrollment.holdout,
                Enrollment.goal_reached_at.is_not(None),
                func.count(),
            )
            .where(Enrollment.journey_name == spec.journey)
            .group_by(Enrollment.holdout, Enrollment.goal_reached_at.is_not(None))
        )
    }
    steps = {s.id: StepFunnel(s.id, s.send) for s in spec.steps}

    def stages(step_id: str, channel: str, variant: str | None) -> list[Stage]:
        funnel = steps.setdefault(step_id, StepFunnel(step_id, channel))
        return [funnel.total] + ([funnel.variants.setdefault(variant, Stage())] if variant else [])

    mine = Delivery.journey_name == spec.journey
    for step_id, channel, variant, status, code, detail, n in session.execute(
        select(
            Delivery.step_id,
            Delivery.channel,
            Delivery.variant,
            Delivery.status,
            Delivery.reason_code,
            Delivery.reason_detail,
            func.count(),
        )
        .where(mine)
        .group_by(
            Delivery.step_id,
            Delivery.channel,
            Delivery.variant,
            Delivery.status,
            Delivery.reason_code,
            Delivery.reason_detail,
        )
    ):
        for stage in stages(step_id, channel, variant):
            _count(stage, status, code, detail, int(n))
    # goal after delivery: the goal was reached at or after this step's send
    for step_id, channel, variant, n in session.execute(
        select(Delivery.step_id, Delivery.channel, Delivery.variant, func.count())
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(mine, Delivery.status == "sent", Enrollment.goal_reached_at >= Delivery.sent_at)
        .group_by(Delivery.step_id, Delivery.channel, Delivery.variant)
    ):
        for stage in stages(step_id, channel, variant):
            stage.goal += int(n)
    clicks = _clicks(session, spec.journey)
    clickers = sorted(set().union(*clicks.values())) if clicks else []
    for start in range(0, len(clickers), 1000):
        # a customer gets one variant of a step: a click on the step's link is that variant's
        for step_id, channel, variant, customer_id in session.execute(
            select(Delivery.step_id, Delivery.channel, Delivery.variant, Delivery.customer_id)
            .where(
                mine,
                Delivery.status == "sent",
                Delivery.customer_id.in_(clickers[start : start + 1000]),
            )
            .distinct()
        ):
            if customer_id in clicks.get(step_id, set()):
                for stage in stages(step_id, channel, variant):
                    stage.clicked += 1
    treated = enrolled.get((False, True), 0) + enrolled.get((False, False), 0)
    held = enrolled.get((True, True), 0) + enrolled.get((True, False), 0)
    return Funnel(
        journey=spec.journey,
        enrolled=treated + held,
        holdout=held,
        goal_reached=enrolled.get((False, True), 0) + enrolled.get((True, True), 0),
        goal_treated=enrolled.get((False, True), 0),
        goal_holdout=enrolled.get((True, True), 0),
        steps=list(steps.values()),
        days=_days(session, spec) if by_day else [],
    )


def _days(session: Session, spec: JourneySpec) -> list[DayRow]:
    """Daily rows in the journey's time zone (bucketed in Python: portable across dialects;
    only sent rows and enrollments are read)."""
    zone = ZoneInfo(spec.timezone)
    days: dict[date, DayRow] = {}

    def day_row(moment: datetime) -> DayRow:
        day = moment.astimezone(zone).date()
        return days.setdefault(day, DayRow(day))

    for entered_at, holdout, reached in session.execute(
        select(
            Enrollment.entered_at,
            Enrollment.holdout,
            Enrollment.goal_reached_at.is_not(None),
        ).where(Enrollment.journey_name == spec.journey)
    ):
        row = day_row(entered_at)
        row.enrolled += 1
        if holdout:
            row.enrolled_holdout += 1
            row.goal_holdout += bool(reached)
        else:
            row.enrolled_treated += 1
            row.goal_treated += bool(reached)
    for step_id, channel, sent_at in session.execute(
        select(Delivery.step_id, Delivery.channel, Delivery.sent_at).where(
            Delivery.journey_name == spec.journey,
            Delivery.status == "sent",
            Delivery.sent_at.is_not(None),
        )
    ):
        if sent_at is None:
            continue
        row = day_row(sent_at)
        row.sent_by_channel[channel] += 1
        row.sent_by_step[step_id] += 1
    return [days[d] for d in sorted(days)]


def _count(
    stage: Stage, status: DeliveryStatus, code: ReasonCode | None, detail: str | None, n: int
) -> None:
    stage.due += n
    # a render error never reached the channel; any other failure was an attempt
    if status in ATTEMPTED or (status == DeliveryStatus.FAILED and code != ReasonCode.RENDER_ERROR):
        stage.sent += n
    if status == DeliveryStatus.SENT:
        stage.delivered += n
    elif status == DeliveryStatus.FAILED:
        stage.failed[reason_group(code, detail)] += n
    elif status == DeliveryStatus.SKIPPED:
        stage.skipped[reason_group(code, detail)] += n
    elif status == DeliveryStatus.DEFERRED:
        stage.deferred[str(code) if code is not None else "unknown"] += n


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
