"""The send ledger's keys and transitions. One `deliveries` row per (enrollment, step):
written as `sending` before the channel call, then `sent` / `pending` / `failed` /
`skipped` / `deferred` with a reason (code and detail: db.models.ReasonCode)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

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
