"""The send ledger's keys and transitions. One `deliveries` row per (enrollment, step):
written as `sending` before the channel call, then `sent` / `pending` / `failed` /
`skipped` / `deferred` with a reason (code and detail: db.models.ReasonCode)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.storage.models import Delivery, DeliveryStatus, ReasonCode

_NAMESPACE = uuid.UUID("6f1c8a5e-3c1e-4a53-9d2b-5a3e2f0c9b11")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def idempotency_key(journey: str, enrollment_id: int, step_id: str) -> str:
    """Stable for the row's whole life: every retry and rerun sends the same key.

    It is str(uuid.uuid5(_NAMESPACE, "journey/enrollment/step")), written out (SHA-1, then
    the version and variant bits) because the UUID object costs twice the hash for every
    row a batch selects (tests/test_ledger_guarantees.py holds the two equal)."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{journey}/{enrollment_id}/{step_id}".encode()).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest[:16].hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def skip_open_deliveries(
    session: Session, enrollment_ids: Iterable[int], code: ReasonCode, now: datetime
) -> None:
    """Deferred messages of enrollments that left the journey will never be sent."""
    ids = list(enrollment_ids)
    for start in range(0, len(ids), 500):
        session.execute(
            update(Delivery)
            .where(
                Delivery.enrollment_id.in_(ids[start : start + 500]),
                Delivery.status == DeliveryStatus.DEFERRED,
            )
            .values(
                status=DeliveryStatus.SKIPPED,
                reason_code=code,
                reason_detail=None,
                next_attempt_at=None,
                updated_at=now,
            )
        )


def in_doubt(session: Session, journey: str, customer_id: int | None = None) -> list[Delivery]:
    """The journey's messages held in doubt (ReasonCode.IN_DOUBT), oldest first; of one
    customer when `customer_id` is given."""
    query = select(Delivery).where(
        Delivery.journey_name == journey,
        Delivery.status == DeliveryStatus.DEFERRED,
        Delivery.reason_code == ReasonCode.IN_DOUBT,
    )
    if customer_id is not None:
        query = query.where(Delivery.customer_id == customer_id)
    return list(session.scalars(query.order_by(Delivery.updated_at, Delivery.id)))


def resolve_in_doubt(
    session: Session,
    journey: str,
    customer_id: int,
    step_id: str | None,
    was_sent: bool,
    now: datetime,
) -> Delivery:
    """A person's decision on a message held in doubt: it arrived (`was_sent`: recorded as
    sent, at the moment it was held), or it did not (sent again at the next tick, as a new
    attempt: no longer in doubt). `step_id` may be left out when the customer has one."""
    rows = in_doubt(session, journey, customer_id)
    if step_id is not None:
        rows = [row for row in rows if row.step_id == step_id]
    if not rows:
        step = f" at step '{step_id}'" if step_id is not None else ""
        raise ConfigError(f"customer {customer_id} has no message in doubt in {journey}{step}")
    if len(rows) > 1:
        steps = ", ".join(sorted({row.step_id for row in rows}))
        raise ConfigError(
            f"customer {customer_id} has {len(rows)} messages in doubt in {journey} (steps "
            f"{steps}): name one with --step"
        )
    (row,) = rows
    if was_sent:
        row.status, row.sent_at = DeliveryStatus.SENT, row.updated_at
        row.reason_code, row.reason_detail = None, "a person confirmed it arrived"
    else:
        row.status, row.next_attempt_at = DeliveryStatus.DEFERRED, now
        row.reason_code = ReasonCode.RETRY
        row.reason_detail = "a person found it did not arrive"
    row.updated_at = now
    return row
