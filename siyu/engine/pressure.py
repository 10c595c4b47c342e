"""Contact pressure, checked right before a send: frequency caps (rolling or calendar windows,
per channel or across channels, counted over every journey's ledger) and fatigue back-off.

A message held by either is deferred to the moment it would be allowed, never dropped; the
step's `within` deadline decides whether it is still worth sending then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.engine.bad_data import customer_zone
from siyu.policies import Cap, Policies
from siyu.storage.id_lists import in_ids
from siyu.storage.models import Delivery, Event, Order
from siyu.storage.types import as_utc

COUNTED = ("sending", "pending", "sent")  # a message handed to a channel counts at once


def period_bounds(now: datetime, period: str, timezone: str) -> tuple[datetime, datetime]:
    """The calendar day / week (Monday first) / month containing `now`, in the customer's
    time zone, as UTC [start, end)."""
    zone = customer_zone(timezone)
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = midnight, midnight + timedelta(days=1)
    elif period == "week":
        start = midnight - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    else:
        start = midnight.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # Re-attach the zone so a DST change inside the period lands on local midnight.
    return (
        start.replace(tzinfo=None).replace(tzinfo=zone).astimezone(now.tzinfo),
        end.replace(tzinfo=None).replace(tzinfo=zone).astimezone(now.tzinfo),
    )


@dataclass
class ContactHistory:
    """Marketing messages recently handed to channels, and last interactions, per customer."""

    sends: dict[int, list[tuple[str, datetime]]] = field(default_factory=dict)
    last_interaction: dict[int, datetime] = field(default_factory=dict)

    def record(self, customer_id: int, channel: str, at: datetime) -> None:
        self.sends.setdefault(customer_id, []).append((channel, at))


def load_history(
    session: Session, policies: Policies, customer_ids: list[int], now: datetime
) -> ContactHistory:
    history = ContactHistory()
    if not policies.caps and policies.fatigue is None:
        return history
    # Caps look back at most a month (or their rolling window); fatigue needs the whole run
    # of unanswered sends, so with fatigue on, the whole history is read.
    horizon = now - timedelta(days=32)
    for cap in policies.caps:
        if isinstance(cap.per, timedelta):
            horizon = min(horizon, now - cap.per)
    when = func.coalesce(Delivery.sent_at, Delivery.updated_at)
    dialect = session.get_bind().dialect.name
    query = select(Delivery.customer_id, Delivery.channel, when).where(
        in_ids(Delivery.customer_id, "customers", dialect),  # ix_deliveries_customer
        Delivery.purpose == "marketing",
        Delivery.status.in_(COUNTED),
        when <= now,
    )
    if policies.fatigue is None:
        query = query.where(when >= horizon)
    for customer_id, channel, at in session.execute(query, {"customers": customer_ids}):
        history.record(customer_id, channel, as_utc(at))
    if policies.fatigue is not None:
        history.last_interaction = _last_interactions(
            session, policies.fatigue.interactions, customer_ids, now
        )
    return history


def _last_interactions(
    session: Session, names: list[str], customer_ids: list[int], now: datetime
) -> dict[int, datetime]:
    latest: dict[int, datetime] = {}
    queries = [
        select(Event.customer_id, func.max(Event.occurred_at))
        .where(Event.customer_id.in_(customer_ids), Event.name.in_(names), Event.occurred_at <= now)
        .group_by(Event.customer_id)
    ]
    if "order_paid" in names:
        queries.append(
            select(Order.customer_id, func.max(Order.paid_at))
            .where(Order.customer_id.in_(customer_ids), Order.paid_at <= now)
            .group_by(Order.customer_id)
        )
    for query in queries:
        for customer_id, at in session.execute(query):
            moment = as_utc(at)
            latest[customer_id] = max(latest.get(customer_id, moment), moment)
    return latest


def cap_hold(
    caps: list[Cap],
    history: ContactHistory,
    customer_id: int,
    channel: str,
    now: datetime,
    timezone: str,
) -> tuple[str, datetime] | None:
    """(cap name, when the message would be allowed) for the first cap it would break."""
    sends = history.sends.get(customer_id, [])
    for cap in caps:
        if not cap.applies_to(channel):
            continue
        counted = sorted(at for ch, at in sends if cap.applies_to(ch))
        if isinstance(cap.per, timedelta):
            in_window = [at for at in counted if at > now - cap.per]
            if len(in_window) >= cap.max:
                return cap.name, in_window[len(in_window) - cap.max] + cap.per
        else:
            start, end = period_bounds(now, cap.per, timezone)
            if sum(1 for at in counted if start <= at < end) >= cap.max:
                return cap.name, end
    return None


def fatigue_hold(
    policies: Policies, history: ContactHistory, customer_id: int, now: datetime
) -> datetime | None:
    """When a fatigued customer may be contacted again, or None when not fatigued."""
    fatigue = policies.fatigue
    if fatigue is None:
        return None
    since = history.last_interaction.get(customer_id)
    unanswered = sorted(
        at for _, at in history.sends.get(customer_id, []) if since is None or at > since
    )
    if len(unanswered) < fatigue.after:
        return None
    resume = unanswered[-1] + fatigue.pause
    return resume if resume > now else None
