"""Everything the send rules need about one batch of due enrollments, loaded with one query
per kind of fact, never one query per customer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Result, Select, bindparam, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from siyu.engine.conditions import ConditionFacts, load_condition_facts, merge_conditions
from siyu.engine.context import EngineContext
from siyu.engine.event_sources import filtered_source
from siyu.engine.marketer_sql import journey_sql, journeys_dir_of
from siyu.engine.pressure import ContactHistory, load_history
from siyu.language.spec import EventFilter, JourneySpec, Step
from siyu.language.where_clause import tick_date
from siyu.storage.id_lists import in_ids
from siyu.storage.models import ChannelIdentity, Consent, Customer, Suppression
from siyu.storage.sources import CUSTOMER_COLUMNS, SOURCES
from siyu.storage.types import as_utc


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
    # Rows whose column could not be read (a date out of Python's range, JSON that does not
    # parse): customer id / entry event key -> the column. Those rows fail, the rest go on.
    bad: dict[int, str] = field(default_factory=dict)
    bad_events: dict[str, str] = field(default_factory=dict)


class _FactQueries(NamedTuple):
    customers: Select[Any]
    consents: Select[Any]
    suppressed: Select[Any]
    addresses: Select[Any]


@cache
def _fact_queries(dialect: str) -> _FactQueries:
    """The fact queries, built once per database kind: each batch binds its customer ids to
    the parameter `ids` (siyu.storage.id_lists) and runs them on the session's Core connection
    (plain rows, no ORM result layer)."""
    return _FactQueries(
        customers=select(*(getattr(Customer, c) for c in CUSTOMER_COLUMNS)).where(
            in_ids(Customer.id, "ids", dialect)
        ),
        consents=select(Consent.customer_id, Consent.purpose).where(
            in_ids(Consent.customer_id, "ids", dialect), Consent.granted.is_(True)
        ),
        suppressed=select(Suppression.customer_id).where(
            in_ids(Suppression.customer_id, "ids", dialect),
            Suppression.channel.in_((bindparam("channel"), "*")),
        ),
        addresses=select(ChannelIdentity.customer_id, ChannelIdentity.value).where(
            in_ids(ChannelIdentity.customer_id, "ids", dialect),
            ChannelIdentity.kind == bindparam("kind"),
        ),
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
    queries = _fact_queries(session.get_bind().dialect.name)
    customers, bad = _tolerant(run, queries.customers, "ids", ids, "id")
    events: dict[str, dict[str, Any]] = {}
    bad_events: dict[str, str] = {}
    if spec.entry.event is not None:
        source = SOURCES[spec.entry.event]
        row_ids = source.key_ids(d.entry_key for d in batch)
        events, bad_rows = _tolerant(
            run, _ENTRY_EVENTS[source.name], "row_ids", row_ids, "event_key"
        )
        for due in batch:
            broken = [bad_rows[i] for i in source.key_ids([due.entry_key]) if i in bad_rows]
            if broken:
                bad_events[due.entry_key] = f"{source.name}.{broken[0]}"
    exits: dict[int, datetime] = {}
    journeys = journeys_dir_of(ctx.templates_dir)
    today = tick_date(now, spec.timezone)  # current_date in the journey's SQL
    if spec.exit_when is not None:
        exit_when = spec.exit_when
        with journey_sql(spec, "exit_when.where", journeys):
            for found in _by_customer(
                lambda part: _exits(session, exit_when, part, now, today),
                batch,
                f"exit_when.{exit_when.event}",
                bad,
            ):
                exits.update(found)
    consents: dict[int, set[str]] = {}
    for customer_id, purpose in run(queries.consents, {"ids": ids}):
        consents.setdefault(customer_id, set()).add(purpose)
    suppressed = set(run(queries.suppressed, {"ids": ids, "channel": step.send}).scalars())
    if identity_kind == "customer_id":
        addresses = {i: str(i) for i in ids}
    else:
        addresses = dict(run(queries.addresses, {"ids": ids, "kind": identity_kind}).tuples().all())
    conditions = None
    if step.if_ is not None:
        kinds = {name: channel.identity_kind for name, channel in ctx.channels.items()}
        condition = step.if_
        with journey_sql(spec, f"step '{step.id}' if", journeys):
            conditions = merge_conditions(
                _by_customer(
                    lambda part: load_condition_facts(
                        session,
                        condition,
                        spec.journey,
                        [d.enrollment_id for d in part],
                        [d.customer_id for d in part],
                        now,
                        kinds,
                        today,
                    ),
                    batch,
                    "if",
                    bad,
                )
            )
    history = ContactHistory()
    if step.purpose == "marketing":
        for part_history in _by_customer(
            lambda part: load_history(session, ctx.policies, [d.customer_id for d in part], now),
            batch,
            "contact_history",
            bad,
        ):
            history.sends.update(part_history.sends)
            history.last_interaction.update(part_history.last_interaction)
    return BatchFacts(
        customers,
        events,
        exits,
        consents,
        suppressed,
        addresses,
        conditions,
        history,
        bad,
        bad_events,
    )


# What reading a stored value that Python cannot represent raises: SQLite's text dates and
# JSON are parsed by SQLAlchemy (ValueError, OverflowError), PostgreSQL's by psycopg
# (DataError, e.g. a date after the year 9999).
_UNREADABLE = (ValueError, OverflowError, DataError)
Run = Callable[..., Result[Any]]
T = TypeVar("T")


def _exits(
    session: Session, exit_when: EventFilter, part: list[Due], now: datetime, today: date
) -> dict[int, datetime]:
    """The latest exit event (until `now`) of each customer of `part` that has one."""
    src = filtered_source(session, exit_when, today)
    exits: dict[int, datetime] = {}
    for customer_id, occurred_at in session.execute(
        select(src.c.customer_id, src.c.occurred_at).where(
            src.c.customer_id.in_([d.customer_id for d in part]), src.c.occurred_at <= now
        )
    ):
        at = as_utc(occurred_at)
        exits[customer_id] = max(exits.get(customer_id, at), at)
    return exits


def _by_customer(
    load: Callable[[list[Due]], T], batch: list[Due], label: str, bad: dict[int, str]
) -> list[T]:
    """[load(batch)]; when a value in it cannot be read, load([due]) for each due instead,
    and the customers whose own rows cannot be read are put in `bad` as `label`."""
    try:
        return [load(batch)]
    except _UNREADABLE as error:
        first = error
    loaded: list[T] = []
    failed: list[int] = []
    for due in batch:
        try:
            loaded.append(load([due]))
        except _UNREADABLE:
            failed.append(due.customer_id)
    _not_systematic(first, failed, len(batch))
    for customer_id in failed:
        bad.setdefault(customer_id, label)
    return loaded


def _not_systematic(error: Exception, failed: list[Any], tried: int) -> None:
    """Re-raise `error` when every row of a batch of several failed on its own: that is
    the query's or the engine's fault, not one customer's data (the step fails and is
    retried instead of failing every message for good)."""
    if tried > 1 and len(failed) == tried:
        raise error


def _tolerant(
    run: Run, query: Select[Any], param: str, values: list[Any], key: str
) -> tuple[dict[Any, dict[str, Any]], dict[Any, str]]:
    """`query`'s rows for `values` (bound to the expanding parameter `param`) keyed by
    column `key`, and {value: column} for the rows with a column that cannot be read. The
    usual case is one query; only a batch with an unreadable row is read again row by row
    (and that row column by column, to name the column)."""
    try:
        return _by_key(run(query, {param: values}), key), {}
    except _UNREADABLE as error:
        first = error
    rows: dict[Any, dict[str, Any]] = {}
    failed: list[Any] = []
    for value in values:
        try:
            rows.update(_by_key(run(query, {param: [value]}), key))
        except _UNREADABLE:
            failed.append(value)
    _not_systematic(first, failed, len(values))
    return rows, {value: _unreadable_column(run, query, param, value) for value in failed}


def _unreadable_column(run: Run, query: Select[Any], param: str, value: Any) -> str:
    """The name of the first column of `query` that cannot be read for `value`."""
    for column in query.selected_columns:
        probe = select(column)
        if query.whereclause is not None:
            probe = probe.where(query.whereclause)
        try:
            run(probe, {param: [value]}).all()
        except _UNREADABLE:
            return str(column.name)
    return "row"


def _by_key(result: Result[Any], key: str) -> dict[Any, dict[str, Any]]:
    """Rows as dicts keyed by column `key` (zip over the names: cheaper than RowMapping)."""
    names = list(result.keys())
    at = names.index(key)
    return {row[at]: dict(zip(names, row, strict=True)) for row in result}
