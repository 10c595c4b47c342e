"""Durations as marketers write them: `90s`, `15m`, `12h`, `3d`, `2w`, `1d12h`, `-3d`."""

from __future__ import annotations

import re
from datetime import timedelta

from siyu.settings import settings

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"-?(?:\d+[smhdw])+")

DURATION_HINT = "write a number and a unit: 90s, 15m, 12h, 3d, 2w (or combined, like 1d12h)"

# A duration is added to dates at every tick; one beyond this (either sign) is refused when
# the file is checked instead of overflowing a date at run time. SIYU_MAX_DURATION_DAYS.
MAX_DURATION_ENV = "SIYU_MAX_DURATION_DAYS"  # default ten years (siyu/settings.py)


def max_duration() -> timedelta:
    return timedelta(days=settings().max_duration_days)


def parse_duration(text: str | int | timedelta) -> timedelta:
    """Parse a duration. A bare 0 is allowed; any other bare number is ambiguous and refused;
    one longer than `max_duration()` is refused too."""
    try:
        value = _parse(text)
    except OverflowError:
        value = timedelta.max
    limit = max_duration()
    if abs(value) > limit:
        raise ValueError(
            f"'{text}' is longer than {limit.days}d, the longest duration allowed "
            f"({MAX_DURATION_ENV})"
        )
    return value


def _parse(text: str | int | timedelta) -> timedelta:
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"expected a duration, got {text!r}; {DURATION_HINT}")
    if isinstance(text, int):
        if text == 0:
            return timedelta(0)
        raise ValueError(f"'{text}' has no unit; {DURATION_HINT}")
    if text.strip().lstrip("-").startswith("P"):  # ISO 8601, as stored specs are written
        from pydantic import TypeAdapter

        return TypeAdapter(timedelta).validate_python(text.strip())
    value = text.strip().lower().replace(" ", "")
    if value == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"'{text}' is not a duration; {DURATION_HINT}")
    sign = -1 if value.startswith("-") else 1
    total = timedelta(0)
    for amount, unit in _PART.findall(value):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    return sign * total


def format_duration(delta: timedelta) -> str:
    """The shortest spelling parse_duration reads back: 3d, 1d12h, 90s, -3d."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(parts)
