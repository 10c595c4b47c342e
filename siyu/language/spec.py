"""The journey language as typed models. `JourneySpec` is what the engine runs; the YAML as
written never reaches the engine.

A journey, in short:

    journey: first-purchase-care        # name, used in the database and in Prefect
    schedule: "*/15 * * * *"            # how often it ticks (cron, in `timezone`)
    timezone: Asia/Shanghai
    quiet_hours: "20:00-08:00"          # marketing steps never send inside this window
    entry:     {event: order_paid, where: "order_seq = 1"}
    exit_when: {event: order_paid, where: "order_seq >= 2"}
    goal:      {event: order_paid, where: "order_seq >= 2", within: 30d}
    steps:
      - {id: join-group, at: 0h, send: wecom_group_invite, template: join_group.j2}
      - {id: day3-care, within: 3d, send: wecom, template: day3_care.j2}
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from siyu.language.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
SLUG = r"^[a-z0-9][a-z0-9_-]*$"
SLUG_HINT = "use lower-case letters, digits, '-' and '_'"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventFilter(_Strict):
    """Rows of an event source (see db.sources), optionally narrowed by a SQL condition on
    the source's columns."""

    event: str
    where: str | None = None


class Entry(EventFilter):
    # How far before the journey's first tick entry events still count. 0 means a journey
    # switched on today only takes customers whose entry event happens from now on.
    lookback: Duration = timedelta(0)


class Goal(EventFilter):
    within: Duration


class QuietHours(_Strict):
    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # wraps midnight


def parse_quiet_hours(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", value)
    if not match:
        raise ValueError(f"'{value}' is not a time range; write it like \"20:00-08:00\"")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"'{value}' has an impossible time of day")
    if (h1, m1) == (h2, m2):
        raise ValueError(f"'{value}' is empty: start and end are the same")
    return {"start": time(h1, m1), "end": time(h2, m2)}


class Step(_Strict):
    id: Annotated[str, Field(pattern=SLUG, max_length=64)]
    at: Duration = timedelta(0)  # due this long after the entry event
    # The step may be sent until this long after the entry event; later, it is skipped
    # as `expired` rather than sent late. None: no deadline.
    within: Duration | None = None
    send: str  # channel name
    template: str  # file in templates/
    # marketing: needs marketing consent and respects quiet hours; notification: neither.
    purpose: Literal["marketing", "notification"] = "marketing"
    params: dict[str, str] = Field(default_factory=dict)  # channel extras (template code...)

    @model_validator(mode="after")
    def _window_is_sane(self) -> Step:
        if self.at < timedelta(0):
            raise ValueError(f"`at` of step '{self.id}' is negative; offsets count from entry")
        if self.within is not None and self.within <= self.at:
            raise ValueError(
                f"step '{self.id}': `within` ({self.within}) must be later than `at` ({self.at})"
            )
        return self

    @property
    def deadline(self) -> timedelta | None:
        return self.within


class JourneySpec(_Strict):
    journey: Annotated[str, Field(pattern=SLUG, max_length=64)]
    description: str = ""
    schedule: str = "*/15 * * * *"
    timezone: str = "Asia/Shanghai"
    quiet_hours: Annotated[QuietHours | None, BeforeValidator(parse_quiet_hours)] = Field(
        default_factory=lambda: QuietHours(start=time(20), end=time(8))
    )
    entry: Entry
    exit_when: EventFilter | None = None
    goal: Goal | None = None
    steps: Annotated[list[Step], Field(min_length=1)]

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from datetime import datetime

        try:
            CronSim(value, datetime(2026, 1, 1))
        except (CronSimError, ValueError) as error:
            raise ValueError(f"'{value}' is not a cron expression ({error})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not a time zone; e.g. Asia/Shanghai") from None
        return value

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
