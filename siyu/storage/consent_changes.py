"""The history of consents and suppressions (table consent_changes, models.ConsentChange).

Every writer of a consent or a suppression records the change here in the same transaction,
with its moment as the data gives it: an opt-out, an unsubscribe link, a channel's refusal at
the moment it was handled (siyu/engine/optouts.py suppress), an import at the consent time
its file gives (`consent_at`), else at the import's own time. A consent the database learns
for the first time without a moment (an import with no `consent_at`) is not a change the
data dates: no row; its `updated_at` says since when it is known.

A backtest reads it to see consents and suppressions as they were at each simulated moment
(siyu/simulate/consent_replay.py); nothing in the live engine reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Connection, Table

from siyu.storage.bulk import insert_many
from siyu.storage.models import ConsentChange

CONSENT = "consent"
SUPPRESSION = "suppression"
# A consent's states, then a suppression's ("absent": no row, for either).
GRANTED = "granted"
DENIED = "denied"
ABSENT = "absent"
SUPPRESSED = "suppressed"

_TABLE: Table = ConsentChange.__table__  # type: ignore[assignment]


class Change(TypedDict):
    customer_id: int
    kind: str
    name: str
    previous: str
    previous_since: datetime | None
    state: str
    at: datetime
    source: str | None


def consent_state(granted: bool | None) -> str:
    """A consent row's state: its `granted`, or no row (None)."""
    if granted is None:
        return ABSENT
    return GRANTED if granted else DENIED


def consent_change(
    customer_id: int,
    purpose: str,
    before: tuple[bool, datetime] | None,
    granted: bool,
    at: datetime,
    source: str | None,
) -> Change:
    """A consent set to `granted` at `at`; `before`: the row it replaces (granted,
    updated_at), or None when there was none."""
    return Change(
        customer_id=customer_id,
        kind=CONSENT,
        name=purpose,
        previous=consent_state(before[0] if before else None),
        previous_since=before[1] if before else None,
        state=consent_state(granted),
        at=at,
        source=source,
    )


def suppression_change(customer_id: int, channel: str, at: datetime, reason: str) -> Change:
    """A suppression written where there was none."""
    return Change(
        customer_id=customer_id,
        kind=SUPPRESSION,
        name=channel,
        previous=ABSENT,
        previous_since=None,
        state=SUPPRESSED,
        at=at,
        source=reason[:128],
    )


def record_changes(connection: Connection, changes: Sequence[Change]) -> None:
    """Append the changes (one statement; COPY on PostgreSQL), in the caller's transaction."""
    rows: list[dict[str, Any]] = [dict(change) for change in changes]
    if rows:
        insert_many(connection, _TABLE, rows)
