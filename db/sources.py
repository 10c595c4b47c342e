"""Event sources: the names journeys use in `entry.event`, `exit_when.event` and `goal.event`,
each a SELECT over the brand's tables with a fixed set of columns.

Every source has `event_key` (unique per row, stored on enrollments), `customer_id` and
`occurred_at`; the other columns can be used in a journey's `where:` and in templates as
`event.<column>`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Select, String, cast, literal, select
from sqlalchemy.sql import ColumnElement

from db.models import Customer, Event, Order, Subscription

AnySelect = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class EventSource:
    name: str
    description: str
    columns: tuple[str, ...]

    def select(self) -> AnySelect:
        return _BUILDERS[self.name]()


def _order_paid() -> AnySelect:
    return select(
        (literal("order:") + cast(Order.id, String)).label("event_key"),
        Order.customer_id.label("customer_id"),
        Order.paid_at.label("occurred_at"),
        Order.id.label("order_id"),
        Order.order_no.label("order_no"),
        Order.order_seq.label("order_seq"),
        Order.amount.label("amount"),
        Order.category.label("category"),
        Order.store.label("store"),
    )


def _customer_created() -> AnySelect:
    return select(
        (literal("customer:") + cast(Customer.id, String)).label("event_key"),
        Customer.id.label("customer_id"),
        Customer.created_at.label("occurred_at"),
        Customer.city.label("city"),
        Customer.member_level.label("member_level"),
    )


def _subscription_started() -> AnySelect:
    return select(
        (literal("subscription:") + cast(Subscription.id, String)).label("event_key"),
        Subscription.customer_id.label("customer_id"),
        Subscription.started_at.label("occurred_at"),
        Subscription.plan.label("plan"),
        Subscription.renews_at.label("renews_at"),
        Subscription.auto_renew.label("auto_renew"),
    )


def _behaviour(name: str) -> AnySelect:
    key: ColumnElement[str] = literal("event:") + cast(Event.id, String)
    return select(
        key.label("event_key"),
        Event.customer_id.label("customer_id"),
        Event.occurred_at.label("occurred_at"),
        Event.properties.label("properties"),
    ).where(Event.name == name)


BEHAVIOUR_EVENTS = ("browse", "group_joined", "coupon_claimed", "link_clicked", "sms_reply")

SOURCES: dict[str, EventSource] = {
    "order_paid": EventSource(
        "order_paid",
        "a paid order (orders table)",
        (
            "event_key",
            "customer_id",
            "occurred_at",
            "order_id",
            "order_no",
            "order_seq",
            "amount",
            "category",
            "store",
        ),
    ),
    "subscription_started": EventSource(
        "subscription_started",
        "a membership or subscription started (subscriptions table)",
        ("event_key", "customer_id", "occurred_at", "plan", "renews_at", "auto_renew"),
    ),
    "customer_created": EventSource(
        "customer_created",
        "a new customer record (customers table)",
        ("event_key", "customer_id", "occurred_at", "city", "member_level"),
    ),
}
for _name in BEHAVIOUR_EVENTS:
    SOURCES[_name] = EventSource(
        _name,
        f"a '{_name}' row of the events table",
        ("event_key", "customer_id", "occurred_at", "properties"),
    )

_BUILDERS: dict[str, Callable[[], AnySelect]] = {
    "order_paid": _order_paid,
    "customer_created": _customer_created,
    "subscription_started": _subscription_started,
    **{name: partial(_behaviour, name) for name in BEHAVIOUR_EVENTS},
}

# Columns of the customer a template sees as `customer.<column>`.
CUSTOMER_COLUMNS = ("id", "name", "gender", "city", "member_level", "birthday", "timezone")


def entry_columns(event: str | None) -> tuple[str, ...]:
    """The columns templates see as `event.<column>`; none for calendar entries (no event)."""
    return SOURCES[event].columns if event in SOURCES else ()
