"""The daily metrics alert rules watch, each for one day [start, end) in the brand's zone.

churn_rate         customers who entered the `churned` lifecycle stage that day, over the
                   customers in any other lifecycle stage when the day began
wecom_unread_rate  WeCom messages delivered in the day that ends `wait` before `end` which
                   got no interaction from the customer (an order, a click, a reply...)
                   within `wait`: the platform gives no read receipts, so no response in
                   time is what "unread" can mean
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from siyu.storage.models import Delivery, Event, Order, SegmentMembership
from siyu.storage.types import as_utc

INTERACTIONS = ("link_clicked", "sms_reply", "coupon_claimed", "group_joined", "browse")


@dataclass
class MetricValue:
    value: float
    numerator: int
    denominator: int
    # (customer id, step id, sent at) of the messages left unread (wecom_unread_rate)
    unread: list[tuple[int, str, datetime]] = field(default_factory=list)


def churn_rate(session: Session, start: datetime, end: datetime) -> MetricValue:
    lifecycle = SegmentMembership.family == "lifecycle"
    base = session.scalar(
        select(func.count()).where(
            lifecycle,
            SegmentMembership.segment != "churned",
            SegmentMembership.entered_at < start,
            or_(SegmentMembership.left_at.is_(None), SegmentMembership.left_at >= start),
        )
    )
    churned = session.scalar(
        select(func.count()).where(
            lifecycle,
            SegmentMembership.segment == "churned",
            SegmentMembership.entered_at >= start,
            SegmentMembership.entered_at < end,
        )
    )
    base, churned = int(base or 0), int(churned or 0)
    return MetricValue(churned / base if base else 0.0, churned, base)


def wecom_unread_rate(
    session: Session, channel: str, start: datetime, end: datetime, wait: timedelta
) -> MetricValue:
    sent = session.execute(
        select(Delivery.customer_id, Delivery.step_id, Delivery.sent_at).where(
            Delivery.channel == channel,
            Delivery.status == "sent",
            Delivery.sent_at >= start - wait,
            Delivery.sent_at < end - wait,
        )
    ).all()
    if not sent:
        return MetricValue(0.0, 0, 0)
    ids = sorted({row[0] for row in sent})
    touched: dict[int, list[datetime]] = {}
    horizon = and_(Event.occurred_at >= start - wait, Event.occurred_at < end)
    for customer_id, at in session.execute(
        select(Event.customer_id, Event.occurred_at).where(
            Event.customer_id.in_(ids), Event.name.in_(INTERACTIONS), horizon
        )
    ):
        touched.setdefault(customer_id, []).append(as_utc(at))
    for customer_id, at in session.execute(
        select(Order.customer_id, Order.paid_at).where(
            Order.customer_id.in_(ids), Order.paid_at >= start - wait, Order.paid_at < end
        )
    ):
        touched.setdefault(customer_id, []).append(as_utc(at))
    unread = [
        (customer_id, step_id, as_utc(sent_at))
        for customer_id, step_id, sent_at in sent
        if not any(
            as_utc(sent_at) < t <= as_utc(sent_at) + wait for t in touched.get(customer_id, [])
        )
    ]
    return MetricValue(len(unread) / len(sent), len(unread), len(sent), unread)
