"""Everything the send rules need about one batch of due enrollments, loaded with one query
per kind of fact, never one query per customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Result, bindparam, select
from sqlalchemy.orm import Session

from db.models import ChannelIdentity, Consent, Customer, Suppression
from db.sources import CUSTOMER_COLUMNS, SOURCES
from siyu.language.spec import JourneySpec, Step
from tasks.conditions import ConditionFacts, load_condition_facts
from tasks.context import EngineContext
from tasks.enrollment import as_utc, filtered_source
from tasks.marketer_sql import journey_sql, journeys_dir_of
from tasks.pressure import ContactHistory, load_history


@dataclass
class Due:
    """One enrollment due (or possibly due) for one step, with its ledger row if any."""

    enrollment_id: int
    customer_id: int
    entered_at: datetime
    entry_key: str
    holdout: bool
    delivery_id: int | None
    attempts: int
    key: str  # idempotency key


@dataclass
class BatchFacts:
    customers: dict[int, dict[str, Any]]
    events: dict[str, dict[str, Any]]  # entry events by event_key
    exits: dict[int, datetime]  # latest exit event per customer
    consents: dict[int, set[str]]  # granted purposes per customer
    suppressed: set[int]
    addresses: dict[int, str]
    conditions: ConditionFacts | None
    history: ContactHistory


# The fact queries, built once: each batch binds its ids to an expanding IN parameter, and
# runs them on the session's Core connection (plain rows, no ORM result layer).
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_CUSTOMERS = select(*(getattr(Customer, c) for c in CUSTOMER_COLUMNS)).where(Customer.id.in_(_IDS))
_CONSENTS = select(Consent.customer_id, Consent.purpose).where(
    Consent.customer_id.in_(_IDS), Consent.granted.is_(True)
)
_SUPPRESSED = select(Suppression.customer_id).where(
    Suppression.customer_id.in_(_IDS),
    Suppression.channel.in_((bindparam("channel"), "*")),
)
_ADDRESSES = select(ChannelIdentity.customer_id, ChannelIdentity.value).where(
    ChannelIdentity.customer_id.in_(_IDS), ChannelIdentity.kind == bindparam("kind")
)
_ENTRY_EVENTS = {name: source.select_by_keys() for name, source in SOURCES.items()}


def load_batch_facts(
    session: Session,
    ctx: EngineContext,
    spec: JourneySpec,
    step: Step,
    identity_kind: str,
    batch: list[Due],
    now: datetime,
) -> BatchFacts:
    ids = [d.customer_id for d in batch]
    run = session.connection().execute
    customers = _by_key(run(_CUSTOMERS, {"ids": ids}), "id")
    events: dict[str, dict[str, Any]] = {}
    if spec.entry.event is not None:
        source = SOURCES[spec.entry.event]
        row_ids = source.key_ids(d.entry_key for d in batch)
        events = _by_key(run(_ENTRY_EVENTS[source.name], {"row_ids": row_ids}), "event_key")
    exits: dict[int, datetime] = {}
    journeys = journeys_dir_of(ctx.templates_dir)
    if spec.exit_when is not None:
        src = filtered_source(session, spec.exit_when)
        with journey_sql(spec, "exit_when.where", journeys):
            for customer_id, occurred_at in run(
                select(src.c.customer_id, src.c.occurred_at).where(
                    src.c.customer_id.in_(ids), src.c.occurred_at <= now
                )
            ):
                at = as_utc(occurred_at)
                exits[customer_id] = max(exits.get(customer_id, at), at)
    consents: dict[int, set[str]] = {}
    for customer_id, purpose in run(_CONSENTS, {"ids": ids}):
        consents.setdefault(customer_id, set()).add(purpose)
    suppressed = set(run(_SUPPRESSED, {"ids": ids, "channel": step.send}).scalars())
    if identity_kind == "customer_id":
        addresses = {i: str(i) for i in ids}
    else:
        addresses = dict(run(_ADDRESSES, {"ids": ids, "kind": identity_kind}).tuples().all())
    conditions = None
    if step.if_ is not None:
        kinds = {name: channel.identity_kind for name, channel in ctx.channels.items()}
        with journey_sql(spec, f"step '{step.id}' if", journeys):
            conditions = load_condition_facts(
                session, step.if_, spec.journey, [d.enrollment_id for d in batch], ids, now, kinds
            )
    history = (
        load_history(session, ctx.policies, ids, now)
        if step.purpose == "marketing"
        else ContactHistory()
    )
    return BatchFacts(
        customers, events, exits, consents, suppressed, addresses, conditions, history
    )


def _by_key(result: Result[Any], key: str) -> dict[Any, dict[str, Any]]:
    """Rows as dicts keyed by column `key` (zip over the names: cheaper than RowMapping)."""
    names = list(result.keys())
    at = names.index(key)
    return {row[at]: dict(zip(names, row, strict=True)) for row in result}
