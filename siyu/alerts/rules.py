"""Metric alert rules (alerts.yaml `rules:`), evaluated once a day for the day just ended.

Each evaluation stores the day's value (metric_observations). A rule fires when the last
`days` days were all above its threshold and it has not fired within those days, so a
three-day streak fires once, and again only after three more days above it. Firing records an
alert event and runs the rule's actions: start a journey (the caller ticks it at once) and/or
create follow-up tasks for staff (one open task per customer and rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.alerts.config import AlertsConfig, Rule
from siyu.alerts.metrics import MetricValue, churn_rate, wecom_unread_rate
from siyu.storage.models import AlertEvent, FollowUpTask, MetricObservation

StartJourney = Callable[[str], object]
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class RuleOutcome:
    rule: str
    day: date
    value: float
    breached: bool
    fired: bool
    action: str | None = None
    follow_ups: int = 0


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), zone)
    return start, start + timedelta(days=1)


def measure(session: Session, rule: Rule, day: date, zone: ZoneInfo) -> MetricValue:
    start, end = day_bounds(day, zone)
    if rule.metric == "churn_rate":
        return churn_rate(session, start, end)
    return wecom_unread_rate(session, rule.channel, start, end, rule.wait)


def evaluate_rules(
    session: Session,
    config: AlertsConfig,
    now: datetime,
    start_journey: StartJourney,
    zone: ZoneInfo = SHANGHAI,
) -> list[RuleOutcome]:
    """Evaluate every rule for the day before `now` (in `zone`)."""
    day = now.astimezone(zone).date() - timedelta(days=1)
    return [_evaluate(session, rule, day, now, start_journey, zone) for rule in config.rules]


def _evaluate(
    session: Session,
    rule: Rule,
    day: date,
    now: datetime,
    start_journey: StartJourney,
    zone: ZoneInfo,
) -> RuleOutcome:
    value = measure(session, rule, day, zone)
    breached = value.value > rule.above
    observed = session.scalar(
        select(MetricObservation).where(
            MetricObservation.rule == rule.name, MetricObservation.day == day
        )
    )
    if observed is None:
        session.add(
            MetricObservation(
                rule=rule.name, metric=rule.metric, day=day, value=value.value, breached=breached
            )
        )
    else:
        observed.value, observed.breached = value.value, breached
    session.flush()
    outcome = RuleOutcome(rule.name, day, value.value, breached, fired=False)
    if not _streak(session, rule, day) or _fired_recently(session, rule, day, zone):
        return outcome
    outcome.fired = True
    actions = []
    if rule.start_journey is not None:
        start_journey(rule.start_journey)
        actions.append(f"started {rule.start_journey}")
    if rule.follow_up:
        outcome.follow_ups = _follow_ups(session, rule, value, now)
        actions.append(f"{outcome.follow_ups} follow-up tasks")
    outcome.action = ", ".join(actions)
    session.add(
        AlertEvent(
            rule=rule.name,
            kind="metric_breached",
            fired_at=now,
            action=outcome.action,
            detail={
                "metric": rule.metric,
                "day": day.isoformat(),
                "value": round(value.value, 4),
                "above": rule.above,
                "days": rule.days,
                "numerator": value.numerator,
                "denominator": value.denominator,
            },
        )
    )
    session.flush()
    return outcome


def _streak(session: Session, rule: Rule, day: date) -> bool:
    first = day - timedelta(days=rule.days - 1)
    breached = session.scalars(
        select(MetricObservation.breached).where(
            MetricObservation.rule == rule.name,
            MetricObservation.day >= first,
            MetricObservation.day <= day,
        )
    ).all()
    return len(breached) == rule.days and all(breached)


def _fired_recently(session: Session, rule: Rule, day: date, zone: ZoneInfo) -> bool:
    since, _ = day_bounds(day - timedelta(days=rule.days - 1), zone)
    return (
        session.scalar(
            select(AlertEvent.id).where(AlertEvent.rule == rule.name, AlertEvent.fired_at >= since)
        )
        is not None
    )


def _follow_ups(session: Session, rule: Rule, value: MetricValue, now: datetime) -> int:
    open_for = set(
        session.scalars(
            select(FollowUpTask.customer_id).where(
                FollowUpTask.rule == rule.name, FollowUpTask.status == "open"
            )
        )
    )
    created = 0
    for customer_id, step_id, sent_at in value.unread:
        if customer_id in open_for:
            continue
        open_for.add(customer_id)
        session.add(
            FollowUpTask(
                rule=rule.name,
                customer_id=customer_id,
                channel=rule.channel,
                note=f"no response to '{step_id}' sent {sent_at.isoformat(timespec='minutes')}",
                created_at=now,
            )
        )
        created += 1
    return created
