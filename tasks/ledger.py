"""The send ledger's keys and transitions. One `deliveries` row per (enrollment, step):
written as `sending` before the channel call, then `sent` / `pending` / `failed` /
`skipped` / `deferred` with a reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Delivery

_NAMESPACE = uuid.UUID("6f1c8a5e-3c1e-4a53-9d2b-5a3e2f0c9b11")


def idempotency_key(journey: str, enrollment_id: int, step_id: str) -> str:
    """Stable for the row's whole life: every retry and rerun sends the same key."""
    return str(uuid.uuid5(_NAMESPACE, f"{journey}/{enrollment_id}/{step_id}"))


def skip_open_deliveries(
    session: Session, enrollment_ids: Iterable[int], reason: str, now: datetime
) -> None:
    """Deferred messages of enrollments that left the journey will never be sent."""
    ids = list(enrollment_ids)
    for start in range(0, len(ids), 500):
        session.execute(
            update(Delivery)
            .where(
                Delivery.enrollment_id.in_(ids[start : start + 500]), Delivery.status == "deferred"
            )
            .values(status="skipped", reason=reason, next_attempt_at=None, updated_at=now)
        )
