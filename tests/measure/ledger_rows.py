"""Ledger rows written directly, for tests of what is computed from the ledger (breakers,
alert metrics) without running journeys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import count

from sqlalchemy.orm import Session, sessionmaker

from siyu.storage.models import Delivery, Enrollment, Journey, ReasonCode

_keys = count(1)


@dataclass(frozen=True)
class Row:
    customer_id: int
    channel: str
    status: str
    at: datetime  # updated_at, and sent_at for sent rows
    reason_code: ReasonCode | None = None
    reason_detail: str | None = None
    step_id: str = "s"


def write_rows(sessions: sessionmaker[Session], rows: list[Row]) -> None:
    """One enrollment of a journey 'j' per row, with that row as its delivery."""
    with sessions() as session, session.begin():
        first = min(row.at for row in rows)
        journey = Journey(
            name="j", version=1, spec_hash="x", spec={}, activated_at=first, created_at=first
        )
        session.add(journey)
        session.flush()
        for row in rows:
            key = next(_keys)
            enrollment = Enrollment(
                journey_id=journey.id,
                journey_name="j",
                customer_id=row.customer_id,
                entry_key=f"k{key}",
                entered_at=row.at,
                enrolled_at=row.at,
            )
            session.add(enrollment)
            session.flush()
            session.add(
                Delivery(
                    enrollment_id=enrollment.id,
                    journey_name="j",
                    step_id=row.step_id,
                    customer_id=row.customer_id,
                    channel=row.channel,
                    status=row.status,
                    reason_code=row.reason_code,
                    reason_detail=row.reason_detail,
                    idempotency_key=f"key{key}",
                    due_at=row.at,
                    created_at=row.at,
                    updated_at=row.at,
                    sent_at=row.at if row.status == "sent" else None,
                )
            )
