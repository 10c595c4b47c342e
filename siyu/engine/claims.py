"""Claiming ledger rows, so that two workers on the same step never send a message twice.

A worker owns a (enrollment, step) row when, inside its write transaction, it either
inserted the row (INSERT ... ON CONFLICT DO NOTHING RETURNING: a row another worker
inserted first is not returned) or locked an existing one that is still claimable: status
`deferred` or `sending` with `next_attempt_at <= now`. PostgreSQL locks with
`FOR UPDATE SKIP LOCKED` (a row another worker is deciding on is skipped, not waited for; a
committed change is seen, because READ COMMITTED re-checks a locked row's WHERE); SQLite
serialises writers (siyu.storage.engine.write_session takes the write lock first).

A claimed `sending` row carries a lease: `next_attempt_at = now + lease`. Until then no
other worker selects it, so a live worker's in-flight batch is not sent again; after it (in
the tick's clock) the row is claimable again, so a crashed worker's messages are re-sent,
with the same idempotency key.

A batch's rows are claimed together, but handed to the channel one call at a time: a claimed
row waits with provider_code `queued` until its call starts (siyu.engine.receipts.send_chunk
clears it, committed, right before the call). After a crash only the rows of the call that
was under way can have been sent: they are in doubt and looked up before being sent again
(Claimed.in_doubt_since); the queued ones are sent as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Dialect, Table, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from siyu.channels.base import UNVERIFIED
from siyu.storage.bulk import Statements, insert_returning, prepare_insert, run_prepared
from siyu.storage.id_lists import in_ids
from siyu.storage.models import Base, Delivery, DeliveryStatus

DELIVERIES: Table = Base.metadata.tables["deliveries"]
ENROLLMENTS: Table = Base.metadata.tables["enrollments"]
CLAIMABLE = ("deferred", "sending")
# provider_code of a claimed `sending` row whose channel call has not started (see above)
QUEUED = "queued"


def executemany_update(
    table: Table, where: ColumnElement[bool], columns: Sequence[str], **fixed: Any
) -> Update:
    """An UPDATE whose new values come from bind parameters named after their columns, run
    with a list of dicts (one round of executemany, not one statement per row)."""
    values: dict[str, Any] = {name: bindparam(name) for name in columns}
    return update(table).where(where).values(**values, **fixed)


def insert_returning_ids(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], returned: str
) -> list[Any]:
    """Insert `rows` (multi-row statements), skipping rows that conflict with existing ones;
    returns column `returned` of the rows this call inserted."""
    return [row[0] for row in insert_returning(session.connection(), table, rows, (returned,))]


def prepare_new(dialect: Dialect, rows: Sequence[dict[str, Any]]) -> Statements:
    """The insert of new ledger rows, built before the write transaction (siyu/storage/bulk.py)."""
    return prepare_insert(dialect, DELIVERIES, rows, ("enrollment_id", "id"))


def insert_new(session: Session, prepared: Statements) -> dict[int, int]:
    """Insert new ledger rows (from prepare_new); returns {enrollment id: delivery id} for
    the rows this call inserted (a row another worker inserted first is not returned)."""
    return {row[0]: row[1] for row in run_prepared(session.connection(), prepared)}


class Claimed(NamedTuple):
    attempts: int  # before this claim
    # Set when an earlier attempt may have sent the message without its answer being
    # recorded: the row was still `sending` (the attempt's lease ran out: its process or its
    # connection died), or deferred because the lookup after a lost answer failed. The value
    # is when the row was first written, the earliest any attempt can have been made.
    in_doubt_since: datetime | None
    # The row was `sending` under a lease that ended: an earlier attempt did not finish (a
    # tick left it in flight) and this one takes it over.
    lease_lapsed: bool = False


def _in_doubt_since(
    status: str, provider_code: str | None, created_at: datetime
) -> datetime | None:
    if (status == DeliveryStatus.SENDING and provider_code != QUEUED) or (
        status == DeliveryStatus.DEFERRED and provider_code == UNVERIFIED
    ):
        return created_at
    return None


def claim_existing(
    session: Session, delivery_ids: Sequence[int], now: datetime
) -> dict[int, Claimed]:
    """Lock the rows among `delivery_ids` that are still claimable; returns {id: Claimed}."""
    if not delivery_ids:
        return {}
    query = select(
        Delivery.id, Delivery.attempts, Delivery.status, Delivery.provider_code, Delivery.created_at
    ).where(
        Delivery.id.in_(delivery_ids),
        Delivery.status.in_(CLAIMABLE),
        Delivery.next_attempt_at <= now,
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return {
        row_id: Claimed(
            attempts,
            _in_doubt_since(status, code, created_at),
            lease_lapsed=status == DeliveryStatus.SENDING,
        )
        for row_id, attempts, status, code, created_at in session.execute(query)
    }


# One statement for every claimed existing row (executemany); content and address are kept
# when a decision carries none (a deferral keeps what an earlier attempt sent).
_UPDATE_CLAIMED = executemany_update(
    DELIVERIES,
    DELIVERIES.c.id == bindparam("row_id"),
    (
        "status",
        "reason_code",
        "reason_detail",
        "updated_at",
        "attempts",
        "next_attempt_at",
        "variant",
    ),
    content=func.coalesce(bindparam("content"), DELIVERIES.c.content),
    address=func.coalesce(bindparam("address"), DELIVERIES.c.address),
    provider_code=func.coalesce(bindparam("provider_code"), DELIVERIES.c.provider_code),
)


def update_claimed(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(_UPDATE_CLAIMED, list(rows))


@cache
def _handed_over(dialect: str) -> Update:
    return (
        update(DELIVERIES)
        .where(in_ids(DELIVERIES.c.id, "ids", dialect))
        .where(DELIVERIES.c.provider_code == QUEUED)
        .values(provider_code=None)
    )


def mark_handed_over(session: Session, delivery_ids: Sequence[int]) -> None:
    """The rows' channel call starts now: from here on a crash leaves them in doubt."""
    if delivery_ids:
        connection = session.connection()
        connection.execute(_handed_over(connection.dialect.name), {"ids": list(delivery_ids)})


_EXIT = executemany_update(
    ENROLLMENTS,
    ENROLLMENTS.c.id == bindparam("enrollment_id"),
    ("exited_at",),
    status="exited",
    exit_reason="exit_when",
)


def mark_exited(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """rows: {enrollment_id, exited_at}; one executemany."""
    if rows:
        session.connection().execute(_EXIT, list(rows))
