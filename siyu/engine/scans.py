"""The statements a tick runs for every step and every tick, built once with bind parameters
(SQLAlchemy then compiles each shape once), and shaped so that their cost follows the rows
that can still change, not the size of the ledger or of the enrollment history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    cast,
    func,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from siyu.storage.models import Delivery, Enrollment


class unindexed(FunctionElement[Any]):  # noqa: N801 - reads as a SQL function
    """The column as it is, except that SQLite may not use an index for a condition on it (its
    unary +, sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_). Used
    where SQLite, without statistics, would otherwise pick the less selective index."""

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any] | QueryableAttribute[Any]) -> None:
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


_CLAIMABLE = ("deferred", "sending")
_ENROLLMENT = (
    Enrollment.id,
    Enrollment.customer_id,
    Enrollment.entered_at,
    Enrollment.entry_key,
    Enrollment.holdout,
)
_due_statements: dict[tuple[bool, bool, bool, bool], Select[tuple[Any, ...]]] = {}


def _span_statement(one_version: bool) -> Select[tuple[Any, ...]]:
    terms = [
        Enrollment.journey_name == bindparam("journey"),
        Enrollment.status == "active",
        Enrollment.entered_at <= bindparam("cutoff", type_=Enrollment.entered_at.type),
    ]
    if one_version:
        terms.append(Enrollment.journey_id == bindparam("version_id"))
    # `id + 0`: PostgreSQL answers a bare min(id)/max(id) by walking the primary key from each
    # end and filtering every row it passes, which reads the whole table when few enrollments
    # match (237 ms a call at 200,000 enrollments, in a profiled tick); with the expression
    # it reads the matching rows from the (journey, status, entered_at) index instead.
    ordinal = Enrollment.id + 0
    return select(func.min(ordinal), func.max(ordinal)).where(*terms)


_SPAN = {one_version: _span_statement(one_version) for one_version in (False, True)}


def due_id_span(
    session: Session, journey: str, cutoff: datetime, journey_id: int | None
) -> tuple[int, int] | None:
    """The lowest and highest id of the journey's active enrollments old enough for a timed
    step (entered at or before `cutoff`), read from the (journey, status[, version],
    entered_at) index; None when there is none, so nothing can be due.

    The due scan walks enrollments in id order; bounded by this span it no longer reads the
    active enrollments that are not old enough yet (at 1M active enrollments none of them
    due, an idle tick's step took 0.77 s unbounded; `python -m bench.idle_tick`)."""
    params: dict[str, Any] = {"journey": journey, "cutoff": cutoff}
    if journey_id is not None:
        params["version_id"] = journey_id
    low, high = session.connection().execute(_SPAN[journey_id is not None], params).one()
    return None if low is None else (int(low), int(high))


def _due_statement(
    timed: bool, one_version: bool, partitioned: bool, bounded: bool
) -> Select[tuple[Any, ...]]:
    """Enrollments that can be due for a step, in two disjoint parts merged by id:

    missing  active enrollments without a ledger row for the step: an anti-join that reads
             only the unique (enrollment_id, step_id) index, never a row already final;
    waiting  enrollments whose row for the step is claimable again (deferred or sending,
             next_attempt_at reached), found from the (status, next_attempt_at) index.

    (enrollment_id, step_id) is unique, so every enrollment is in at most one part; together
    they are exactly the rows of an outer join whose ledger row is NULL or claimable."""
    key = (timed, one_version, partitioned, bounded)
    statement = _due_statements.get(key)
    if statement is not None:
        return statement

    def enrollment_terms(name: ColumnElement[bool]) -> list[ColumnElement[bool]]:
        terms = [name, Enrollment.status == "active", Enrollment.id > bindparam("after")]
        if one_version:
            terms.append(Enrollment.journey_id == bindparam("version_id"))
        if partitioned:
            terms.append(Enrollment.id % bindparam("parts") == bindparam("part"))
        if timed:
            terms.append(
                Enrollment.entered_at <= bindparam("cutoff", type_=Enrollment.entered_at.type)
            )
        if bounded:  # by due_id_span
            terms.append(Enrollment.id <= bindparam("upto"))
        return terms

    same_step = and_(
        Delivery.enrollment_id == Enrollment.id, Delivery.step_id == bindparam("step_id")
    )
    missing = (
        select(
            *_ENROLLMENT,
            cast(null(), Integer).label("delivery_id"),
            cast(null(), Integer).label("attempts"),
            cast(null(), String).label("idempotency_key"),
        )
        .select_from(Enrollment)
        .outerjoin(Delivery, same_step)
        .where(
            *enrollment_terms(Enrollment.journey_name == bindparam("journey")),
            Delivery.id.is_(None),
        )
    )
    # The journey's name is not indexable here, so SQLite starts from the few claimable
    # ledger rows and looks their enrollments up by id, instead of scanning every active one.
    waiting = (
        select(
            *_ENROLLMENT,
            Delivery.id.label("delivery_id"),
            Delivery.attempts,
            Delivery.idempotency_key,
        )
        .select_from(Enrollment)
        .join(Delivery, same_step)
        .where(
            *enrollment_terms(unindexed(Enrollment.journey_name) == bindparam("journey")),
            Delivery.status.in_(_CLAIMABLE),
            Delivery.next_attempt_at <= bindparam("now", type_=Delivery.next_attempt_at.type),
        )
    )
    due = union_all(missing, waiting).subquery("due")
    statement = select(due).order_by(due.c.id).limit(bindparam("limit"))
    _due_statements[key] = statement
    return statement


def due_rows(
    session: Session,
    journey: str,
    step_id: str,
    now: datetime,
    cutoff: datetime | None,
    journey_id: int | None,
    *,
    after: int,
    limit: int,
    upto: int | None = None,
    part: int = 0,
    parts: int = 1,
) -> Sequence[Row[tuple[Any, ...]]]:
    """(enrollment id, customer id, entered_at, entry_key, holdout, delivery id, attempts,
    idempotency key) of the next `limit` enrollments after `after` that can be due for the
    step: `cutoff` bounds entered_at (None: anchored steps, timed per row by the caller) and
    `upto` the id (due_id_span's highest; None: unbounded);
    `journey_id` None means every version; `parts` > 1 keeps ids ≡ `part` modulo `parts`."""
    statement = _due_statement(
        cutoff is not None, journey_id is not None, parts > 1, upto is not None
    )
    params: dict[str, Any] = {
        "journey": journey,
        "step_id": step_id,
        "after": after,
        "now": now,
        "limit": limit,
    }
    if cutoff is not None:
        params["cutoff"] = cutoff
    if upto is not None:
        params["upto"] = upto
    if journey_id is not None:
        params["version_id"] = journey_id
    if parts > 1:
        params["parts"], params["part"] = parts, part
    return session.connection().execute(statement, params).all()  # Core: plain rows
