"""Readable schedules: `schedule:` and a calendar `entry.calendar:` take cron, or one of a
few plain forms that mean one cron expression each (in the journey's time zone):

    every 15m / every 15 minutes / 每15分钟        */15 * * * *
    every 2h / every 2 hours / 每2小时             0 */2 * * *
    every day at 10:00 / daily at 10:00 / 每天 10:00    0 10 * * *
    every wednesday at 10:00 / 每周三 10:00         0 10 * * 3
    every month on day 1 at 10:00 / 每月1日 10:00   0 10 1 * *

Cron stays the underlying form: Prefect's schedules, the graph and `siyu deploy` see it.
"""

from __future__ import annotations

import re

WEEKDAYS = {
    "sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5,
    "saturday": 6, "日": 0, "天": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6,
}  # fmt: skip
FORMS = (
    "use a cron expression ('*/15 * * * *'), or: every 15m, every 2h, every day at 10:00, "
    "every wednesday at 10:00, every month on day 1 at 10:00 (or 每15分钟, 每2小时, "
    "每天 10:00, 每周三 10:00, 每月1日 10:00)"
)
_AT = r"(?:\s*at\s*|\s+|\s*)(?P<h>\d{1,2}):(?P<m>\d{2})"
_PATTERNS = (
    (r"every\s*(?P<n>\d+)?\s*(?:m|min|mins|minutes?)|每\s*(?P<zn>\d+)\s*分钟", "minutes"),
    (r"every\s*(?P<n>\d+)?\s*(?:h|hours?)|每\s*(?P<zn>\d+)?\s*小时", "hours"),
    (rf"(?:every\s*day|daily|每天){_AT}", "daily"),
    (rf"(?:every\s*(?P<wd>[a-z]+)|每周(?P<zwd>[一二三四五六日天])){_AT}", "weekly"),
    (
        rf"(?:every\s*month\s*on\s*day\s*(?P<d>\d{{1,2}})|每月\s*(?P<zd>\d{{1,2}})\s*[日号]){_AT}",
        "monthly",
    ),
)  # fmt: skip


class ScheduleError(ValueError):
    pass


def to_cron(text: str) -> str:
    """The cron expression `text` means; a 5-field cron expression is returned unchanged
    (cronsim checks it later). ScheduleError for a plain form with impossible numbers."""
    value = " ".join(text.strip().lower().split())
    if not value.startswith(("every", "daily", "每")):
        return text.strip()  # cron as written
    for pattern, kind in _PATTERNS:
        match = re.fullmatch(pattern, value)
        if match:
            return _cron(kind, {k: v for k, v in match.groupdict().items() if v is not None})
    raise ScheduleError(f"'{text}' is not a schedule: {FORMS}")


def _cron(kind: str, parts: dict[str, str]) -> str:
    if kind in ("minutes", "hours"):
        every = int(parts.get("n") or parts.get("zn") or 1)
        limit = 60 if kind == "minutes" else 24
        if not 1 <= every < limit or limit % every:
            raise ScheduleError(
                f"every {every} {kind}: the interval must divide {limit} evenly "
                f"(cron restarts each {'hour' if kind == 'minutes' else 'day'})"
            )
        step = "*" if every == 1 else f"*/{every}"
        return f"{step} * * * *" if kind == "minutes" else f"0 {step} * * *"
    hour, minute = int(parts["h"]), int(parts["m"])
    if hour > 23 or minute > 59:
        raise ScheduleError(f"{hour}:{minute:02d} is not a time of day")
    if kind == "daily":
        return f"{minute} {hour} * * *"
    if kind == "weekly":
        name = parts.get("wd") or parts.get("zwd") or ""
        day = WEEKDAYS.get(name.removesuffix("s")) if name not in WEEKDAYS else WEEKDAYS[name]
        if day is None:
            raise ScheduleError(f"'{name}' is not a day of the week")
        return f"{minute} {hour} * * {day}"
    day_of_month = int(parts.get("d") or parts.get("zd") or 0)
    if not 1 <= day_of_month <= 28:
        raise ScheduleError(
            f"day {day_of_month} of the month: use 1 to 28 (every month has those days)"
        )
    return f"{minute} {hour} {day_of_month} * *"
