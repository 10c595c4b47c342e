"""Compute every customer's segments at `now` and record the changes as memberships: a
customer who moves from one tier to another leaves the old one (left_at = now) and enters
the new one (a new row, entered_at = now). Computing twice at the same data changes nothing.

RFM: R = whole days since the last paid order (ever), F = paid orders and M = spend within
the configured window; tiers in the configured order, first match wins, else `other`.
Lifecycle (buyers only), first that applies: churned (no order for churned_days), at-risk
(no order for at_risk_days), new (one order, first within new_days), mature (mature_orders
orders, or first order mature_days ago), growing.
Activity: high-frequency (at least N interactions — orders or the configured events — in
the last `per`), silent (none for silent_days).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, and_, cast, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Subquery

from siyu.segments.config import SegmentsConfig
from siyu.storage.models import Customer, Event, Order, SegmentMembership
from siyu.storage.types import as_utc


@dataclass(frozen=True)
class Purchases:
    first: datetime
    last: datetime
    orders_in_window: int
    spend_in_window: float
    orders_total: int


@dataclass
class SegmentChanges:
    entered: Counter[str]
    left: Counter[str]
    members: Counter[str]


def rfm_tier(config: SegmentsConfig, now: datetime, buys: Purchases | None) -> str:
    recency = (now - buys.last).days if buys else None
    orders = buys.orders_in_window if buys else 0
    spend = buys.spend_in_window if buys else 0.0
    for tier in config.rfm.tiers:
        if tier.matches(recency, orders, spend):
            return tier.name
    return config.rfm.other


def lifecycle_stage(config: SegmentsConfig, now: datetime, buys: Purchases | None) -> str | None:
    if buys is None:
        return None
    stage = config.lifecycle
    idle = (now - buys.last).days
    if idle >= stage.churned_days:
        return "churned"
    if idle >= stage.at_risk_days:
        return "at-risk"
    tenure = (now - buys.first).days
    if buys.orders_total == 1 and tenure < stage.new_days:
        return "new"
    if buys.orders_total >= stage.mature_orders or tenure >= stage.mature_days:
        return "mature"
    return "growing"


def _purchases(session: Session, config: SegmentsConfig, now: datetime) -> dict[int, Purchases]:
    since = now - config.rfm.window
    window = session.execute(
        select(Order.customer_id, func.count(), func.sum(Order.amount))
        .where(Order.paid_at > since, Order.paid_at <= now)
        .group_by(Order.customer_id)
    ).all()
    in_window = {c: (int(n), float(total or 0)) for c, n, total in window}
    found = {}
    for customer_id, first, last, total in session.execute(
        select(Order.customer_id, func.min(Order.paid_at), func.max(Order.paid_at), func.count())
        .where(Order.paid_at <= now)
        .group_by(Order.customer_id)
    ):
        n, spend = in_window.get(customer_id, (0, 0.0))
        found[customer_id] = Purchases(as_utc(first), as_utc(last), n, spend, int(total))
    return found


def _interactions(
    session: Session, config: SegmentsConfig, now: datetime
) -> dict[int, list[datetime]]:
    horizon = now - max(config.activity.per, timedelta(days=config.activity.silent_days))
    found: dict[int, list[datetime]] = defaultdict(list)
    for customer_id, at in session.execute(
        select(Event.customer_id, Event.occurred_at).where(
            Event.name.in_(config.activity.interactions),
            Event.occurred_at > horizon,
            Event.occurred_at <= now,
        )
    ):
        found[customer_id].append(as_utc(at))
    for customer_id, at in session.execute(
        select(Order.customer_id, Order.paid_at).where(
            Order.paid_at > horizon, Order.paid_at <= now
        )
    ):
        found[customer_id].append(as_utc(at))
    return found


def classify(session: Session, config: SegmentsConfig, now: datetime) -> dict[int, dict[str, str]]:
    """customer id → {family: segment} at `now` (families: rfm, lifecycle, activity)."""
    buys = _purchases(session, config, now)
    touches = _interactions(session, config, now)
    activity = config.activity
    result: dict[int, dict[str, str]] = {}
    for customer_id in session.scalars(select(Customer.id)):
        bought = buys.get(customer_id)
        segments = {"rfm": rfm_tier(config, now, bought)}
        stage = lifecycle_stage(config, now, bought)
        if stage is not None:
            segments["lifecycle"] = stage
        times = touches.get(customer_id, [])
        if sum(1 for t in times if t > now - activity.per) >= activity.high_frequency:
            segments["activity"] = "high-frequency"
        elif not any(t > now - timedelta(days=activity.silent_days) for t in times):
            segments["activity"] = "silent"
        result[customer_id] = segments
    return result


def refresh_segments(session: Session, config: SegmentsConfig, now: datetime) -> SegmentChanges:
    wanted = classify(session, config, now)
    current: dict[tuple[int, str], tuple[int, str]] = {
        (customer_id, family): (membership_id, segment)
        for membership_id, customer_id, family, segment in session.execute(
            select(
                SegmentMembership.id,
                SegmentMembership.customer_id,
                SegmentMembership.family,
                SegmentMembership.segment,
            ).where(SegmentMembership.left_at.is_(None))
        )
    }
    changes = SegmentChanges(Counter(), Counter(), Counter())
    leaving: list[int] = []
    entering: list[dict[str, object]] = []
    for customer_id, segments in wanted.items():
        for family, segment in segments.items():
            changes.members[segment] += 1
            held = current.pop((customer_id, family), None)
            if held is not None and held[1] == segment:
                continue
            if held is not None:
                leaving.append(held[0])
                changes.left[held[1]] += 1
            entering.append(
                dict(customer_id=customer_id, segment=segment, family=family, entered_at=now)
            )
            changes.entered[segment] += 1
    for (_customer, _family), (membership_id, segment) in current.items():
        leaving.append(membership_id)  # no longer in any segment of that family
        changes.left[segment] += 1
    for start in range(0, len(leaving), 1000):
        session.execute(
            update(SegmentMembership)
            .where(SegmentMembership.id.in_(leaving[start : start + 1000]))
            .values(left_at=now)
        )
    if entering:
        session.execute(insert(SegmentMembership), entering)
    return changes


def members(
    session: Session,
    segment: str,
    customer_ids: list[int] | None = None,
    at: datetime | None = None,
) -> set[int]:
    """Customers inside `segment` now, or at `at`: a tick's time, which a backtest sets in the
    past (live, no stay has begun after it or ended after it, so both read the same)."""
    if at is None:
        inside: ColumnElement[bool] = SegmentMembership.left_at.is_(None)
    else:
        inside = and_(
            SegmentMembership.entered_at <= at,
            or_(SegmentMembership.left_at.is_(None), SegmentMembership.left_at > at),
        )
    query = select(SegmentMembership.customer_id).where(
        SegmentMembership.segment == segment, inside
    )
    if customer_ids is not None:
        query = query.where(SegmentMembership.customer_id.in_(customer_ids))
    return set(session.scalars(query))


def segment_entries(segment: str) -> Subquery:
    """Entering `segment` as an entry source (`entry: {segment: NAME}`): one row per stay,
    keyed `segment:<membership id>`, at the moment the customer entered."""
    return (
        select(
            (literal("segment:") + cast(SegmentMembership.id, String)).label("event_key"),
            SegmentMembership.customer_id.label("customer_id"),
            SegmentMembership.entered_at.label("occurred_at"),
        )
        .where(SegmentMembership.segment == segment)
        .subquery("src")
    )
