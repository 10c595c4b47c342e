"""Event sources: the names journeys use in `entry.event`, `exit_when.event` and `goal.event`,
each a SELECT over the brand's tables with a fixed set of columns.

Every source has `event_key` (unique per row, stored on enrollments), `customer_id` and
`occurred_at`; the other columns can be used in a journey's `where:` and in templates as
`event.<column>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Select, String, bindparam, cast, literal, select
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql import ColumnElement

from siyu.storage.models import Customer, Event, Order, Subscription

AnySelect = Select[tuple[Any, ...]]


@dataclass(frozen=True)
class EventSource:
    name: str
    description: str
    columns: tuple[str, ...]

    def select(self) -> AnySelect:
        return _BUILDERS[self.name]()

    def select_by_keys(self) -> AnySelect:
        """The rows whose event_key is among the expanding parameter `row_ids` (see
        `key_ids`), found by primary key instead of computing every candidate's key."""
        _prefix, column = _KEYS[self.name]
        return self.select().where(column.in_(bindparam("row_ids", expanding=True)))

    def key_ids(self, keys: Iterable[str]) -> list[int]:
        """The primary keys inside event keys of this source ('order:42' -> 42)."""
        prefix = _KEYS[self.name][0]
        return [
            int(k[len(prefix) :])
            for k in keys
            if k.startswith(prefix) and k[len(prefix) :].isdigit()
        ]


# Every source's event_key is a prefix and its row's primary key: 'order:' || orders.id.
_KEYS: dict[str, tuple[str, InstrumentedAttribute[int]]] = {
    "order_paid": ("order:", Order.id),
    "customer_created": ("customer:", Customer.id),
    "subscription_started": ("subscription:", Subscription.id),
}


def _event_key(source: str) -> ColumnElement[str]:
    prefix, column = _KEYS[source]
    return (literal(prefix) + cast(column, String)).label("event_key")


def _order_paid() -> AnySelect:
    return select(
        _event_key("order_paid"),
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
        _event_key("customer_created"),
        Customer.id.label("customer_id"),
        Customer.created_at.label("occurred_at"),
        Customer.city.label("city"),
        Customer.member_level.label("member_level"),
    )


def _subscription_started() -> AnySelect:
    return select(
        _event_key("subscription_started"),
        Subscription.customer_id.label("customer_id"),
        Subscription.started_at.label("occurred_at"),
        Subscription.plan.label("plan"),
        Subscription.renews_at.label("renews_at"),
        Subscription.auto_renew.label("auto_renew"),
    )


def _behaviour(name: str) -> AnySelect:
    return select(
        _event_key(name),
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
    _KEYS[_name] = ("event:", Event.id)
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
