"""Quiet hours in the customer's own time zone: defer to the next allowed moment, never drop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from siyu.engine.bad_data import customer_zone
from siyu.language.spec import QuietHours


def next_allowed(now: datetime, quiet: QuietHours | None, timezone: str) -> datetime | None:
    """None when `now` is outside quiet hours; otherwise the UTC moment they end.
    BadCustomerData('timezone') when `timezone` is not a time zone."""
    if quiet is None:
        return None
    local = now.astimezone(customer_zone(timezone))
    if not quiet.contains(local.time()):
        return None
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(UTC)
