"""Quiet hours in the customer's own time zone: defer to the next allowed moment, never drop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from siyu.language.spec import QuietHours


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def next_allowed(now: datetime, quiet: QuietHours | None, timezone: str) -> datetime | None:
    """None when `now` is outside quiet hours; otherwise the UTC moment they end."""
    if quiet is None:
        return None
    local = now.astimezone(_zone(timezone))
    if not quiet.contains(local.time()):
        return None
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(UTC)
