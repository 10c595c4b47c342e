"""When a step is due: an offset from the entry, or from a date column (`at: {from: ...}`),
possibly its next anniversary (birthdays), in the customer's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from siyu.engine.bad_data import BadCustomerData, customer_zone
from siyu.language.spec import Anchor, Step


def _as_moment(value: Any, timezone: str) -> datetime | None:
    """A date column's value as an aware UTC datetime (a plain date is local midnight)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = (
            datetime.fromisoformat(value)
            if "T" in value or " " in value
            else date.fromisoformat(value)
        )
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), customer_zone(timezone)).astimezone(UTC)
    return None


def next_anniversary(moment: datetime, on_or_after: datetime, timezone: str) -> datetime:
    """The first yearly recurrence of `moment`'s month and day (local midnight) that is not
    before `on_or_after`'s local date. 29 February falls on 28 February in other years."""
    zone = customer_zone(timezone)
    month_day = moment.astimezone(zone).date()
    start = on_or_after.astimezone(zone).date()
    for year in (start.year, start.year + 1):
        day = (
            min(month_day.day, 28)
            if (month_day.month, month_day.day) == (2, 29) and not _leap(year)
            else month_day.day
        )
        candidate = date(year, month_day.month, day)
        if candidate >= start:
            return datetime.combine(candidate, time(0), zone).astimezone(UTC)
    raise AssertionError("unreachable: next year always qualifies")


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def step_base(
    step: Step, entered_at: datetime, event: dict[str, Any], customer: dict[str, Any], timezone: str
) -> datetime | None:
    """The moment the step's offset and deadline count from; None when the anchor's date
    column is empty for this customer. BadCustomerData names the column when its value is
    not a usable date (unparsable, or so far out that the step's times overflow)."""
    if not isinstance(step.at, Anchor):
        return entered_at
    row = event if step.at.table == "event" else customer
    try:
        moment = _as_moment(row.get(step.at.column), timezone)
        if moment is None:
            return None
        if step.at.annual:
            moment = next_anniversary(moment, entered_at, timezone)
        _check_range(moment, step.at.offset, step.within or timedelta(0))
    except (ValueError, OverflowError, TypeError):
        raise BadCustomerData(step.at.column) from None
    return moment


def _check_range(moment: datetime, *deltas: timedelta) -> None:
    """OverflowError unless `moment` plus each delta (the due time, the deadline) exists."""
    for delta in deltas:
        _ = moment + delta


def step_offset(step: Step) -> timedelta:
    return step.at.offset if isinstance(step.at, Anchor) else step.at
