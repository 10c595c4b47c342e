"""A step's `if:` condition, evaluated for a whole batch right before the send: the data each
leaf needs is loaded with one query per leaf, then every enrollment is judged in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from siyu.engine.event_sources import filtered_source
from siyu.language.spec import (
    AllCondition,
    AnyCondition,
    Condition,
    CustomerCondition,
    EventCondition,
    EventFilter,
    NotCondition,
    ReachableCondition,
    SegmentCondition,
    StepCondition,
)
from siyu.language.where_clause import to_dialect
from siyu.segments.compute import members as segment_members
from siyu.storage.models import ChannelIdentity, Customer, Delivery, Suppression
from siyu.storage.types import as_utc


@dataclass
class ConditionFacts:
    """What the leaves of one condition tree need, for one batch."""

    events: dict[int, dict[int, list[datetime]]] = field(default_factory=dict)  # leaf→cust→t
    customers: dict[int, set[int]] = field(default_factory=dict)  # leaf → matching customers
    statuses: dict[tuple[int, str], str] = field(default_factory=dict)  # (enrollment, step)
    reachable: dict[str, set[int]] = field(default_factory=dict)  # channel → customers
    segments: dict[str, set[int]] = field(default_factory=dict)  # segment → members now


def merge_conditions(parts: list[ConditionFacts]) -> ConditionFacts:
    """One batch's facts from those of its parts (disjoint sets of customers)."""
    if len(parts) == 1:
        return parts[0]
    merged = ConditionFacts()
    for part in parts:
        for leaf, found in part.events.items():
            merged.events.setdefault(leaf, {}).update(found)
        for leaf, matching in part.customers.items():
            merged.customers.setdefault(leaf, set()).update(matching)
        merged.statuses.update(part.statuses)
        for channel, have in part.reachable.items():
            merged.reachable.setdefault(channel, set()).update(have)
        for segment, members in part.segments.items():
            merged.segments.setdefault(segment, set()).update(members)
    return merged


def leaves(condition: Condition) -> list[Condition]:
    if isinstance(condition, AllCondition | AnyCondition):
        children = condition.all if isinstance(condition, AllCondition) else condition.any
        return [leaf for child in children for leaf in leaves(child)]
    if isinstance(condition, NotCondition):
        return leaves(condition.not_)
    return [condition]


def load_condition_facts(
    session: Session,
    condition: Condition,
    journey: str,
    enrollment_ids: list[int],
    customer_ids: list[int],
    now: datetime,
    identity_kinds: dict[str, str],
    today: date,
) -> ConditionFacts:
    """The facts of `condition`'s leaves for one batch; `current_date` in their SQL is
    `today` (the tick's date in the journey's zone)."""
    facts = ConditionFacts()
    dialect = session.get_bind().dialect.name
    for leaf in leaves(condition):
        key = id(leaf)
        if isinstance(leaf, EventCondition):
            event_filter = EventFilter(event=leaf.event, where=leaf.where)
            src = filtered_source(session, event_filter, today)
            found: dict[int, list[datetime]] = {}
            for customer_id, at in session.execute(
                select(src.c.customer_id, src.c.occurred_at).where(
                    src.c.customer_id.in_(customer_ids), src.c.occurred_at <= now
                )
            ):
                found.setdefault(customer_id, []).append(as_utc(at))
            facts.events[key] = found
        elif isinstance(leaf, CustomerCondition):
            facts.customers[key] = set(
                session.scalars(
                    select(Customer.id).where(
                        Customer.id.in_(customer_ids),
                        text(to_dialect(leaf.customer, dialect, today)),
                    )
                )
            )
        elif isinstance(leaf, StepCondition) and not facts.statuses:
            facts.statuses = {
                (enrollment_id, step_id): status
                for enrollment_id, step_id, status in session.execute(
                    select(Delivery.enrollment_id, Delivery.step_id, Delivery.status).where(
                        Delivery.enrollment_id.in_(enrollment_ids)
                    )
                )
            }
        elif isinstance(leaf, ReachableCondition) and leaf.reachable not in facts.reachable:
            kind = identity_kinds.get(leaf.reachable, "")
            if kind == "customer_id":
                have = set(customer_ids)
            else:
                have = set(
                    session.scalars(
                        select(ChannelIdentity.customer_id).where(
                            ChannelIdentity.customer_id.in_(customer_ids),
                            ChannelIdentity.kind == kind,
                        )
                    )
                )
            blocked = set(
                session.scalars(
                    select(Suppression.customer_id).where(
                        Suppression.customer_id.in_(customer_ids),
                        Suppression.channel.in_((leaf.reachable, "*")),
                    )
                )
            )
            facts.reachable[leaf.reachable] = have - blocked
        elif isinstance(leaf, SegmentCondition):
            _load_segment(session, leaf, customer_ids, now, facts)
    return facts


def _load_segment(
    session: Session,
    leaf: SegmentCondition,
    customer_ids: list[int],
    now: datetime,
    facts: ConditionFacts,
) -> None:
    """`{segment: NAME}`: who of the batch is inside the segment at the tick's `now`
    (siyu.segments)."""
    if leaf.segment not in facts.segments:
        facts.segments[leaf.segment] = segment_members(session, leaf.segment, customer_ids, now)


def holds(
    condition: Condition,
    facts: ConditionFacts,
    *,
    enrollment_id: int,
    customer_id: int,
    entered_at: datetime,
    now: datetime,
) -> bool:
    def check(node: Any) -> bool:
        if isinstance(node, AllCondition):
            return all(check(child) for child in node.all)
        if isinstance(node, AnyCondition):
            return any(check(child) for child in node.any)
        if isinstance(node, NotCondition):
            return not check(node.not_)
        if isinstance(node, EventCondition):
            since = entered_at if node.since == "entry" else now - node.since
            return any(at > since for at in facts.events[id(node)].get(customer_id, []))
        if isinstance(node, CustomerCondition):
            return customer_id in facts.customers[id(node)]
        if isinstance(node, StepCondition):
            return facts.statuses.get((enrollment_id, node.step)) == node.status
        if isinstance(node, ReachableCondition):
            return customer_id in facts.reachable.get(node.reachable, set())
        if isinstance(node, SegmentCondition):
            return customer_id in facts.segments.get(node.segment, set())
        raise TypeError(f"unknown condition {node!r}")

    return check(condition)
