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

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from siyu.language.durations import format_duration, parse_duration
from siyu.language.problems import did_you_mean
from siyu.language.schedules import FORMS, to_cron
from siyu.timezones import is_time_zone

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _readable_schedule(value: object) -> object:
    """A readable schedule ("every 15m", "每天 10:00") as the cron expression it means."""
    return to_cron(value) if isinstance(value, str) else value


SLUG = r"^[a-z0-9][a-z0-9_-]*$"
SLUG_HINT = "use lower-case letters, digits, '-' and '_'"


class KeyProblem(ValueError):
    """A model check's complaint about one key of the mapping it checks (`within` of a
    step): the loader puts the caret on that key instead of on the mapping's first line."""

    def __init__(self, message: str, *keys: str | int) -> None:
        super().__init__(message)
        self.keys = keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventFilter(_Strict):
    """Rows of an event source (see siyu.storage.sources), optionally narrowed by a SQL condition on
    the source's columns."""

    event: str
    where: str | None = None


class ReentryAfter(_Strict):
    after: Duration


def _reentry_kind(value: Any) -> str | None:
    if isinstance(value, dict | ReentryAfter):
        return "reentry-after"
    return "policy" if value in ("never", "always") else None


# A discriminator keeps a wrong value to one error instead of one per alternative.
Reentry = Annotated[
    Annotated[Literal["never", "always"], Tag("policy")]
    | Annotated[ReentryAfter, Tag("reentry-after")],
    Discriminator(
        _reentry_kind,
        custom_error_type="reentry",
        custom_error_message="is not a re-entry policy; write never, always or {after: 30d}",
    ),
]


class Entry(_Strict):
    """Who enters: each matching event (`event` + `where`); for calendar journeys, the
    customers matching `audience` each time the `calendar` cron fires; or each customer
    entering a `segment` (segments.yaml: RFM tiers, lifecycle stages, activity tags)."""

    event: str | None = None
    where: str | None = None
    # cron or a readable form (siyu/language/schedules.py), in the journey's time zone
    calendar: Annotated[str | None, BeforeValidator(_readable_schedule)] = None
    segment: str | None = None
    audience: str | None = None  # SQL condition on the customer's columns
    # How far before the journey's first tick entry events still count. 0 means a journey
    # switched on today only takes customers whose entry event happens from now on.
    lookback: Duration = timedelta(0)
    # Whether a customer who was in the journey may enter it again. Calendar journeys
    # default to `always` (each firing is a new entry), event journeys to `never`.
    reentry: Reentry | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Entry:
        if [self.event, self.calendar, self.segment].count(None) != 2:
            raise ValueError("entry needs exactly one of `event:`, `calendar:` or `segment:`")
        if self.segment is not None and (self.where is not None or self.audience is not None):
            raise KeyProblem(
                "a segment entry takes neither `where:` nor `audience:`",
                "where" if self.where is not None else "audience",
            )
        if self.calendar is not None:
            try:
                _check_cron(self.calendar)
            except ValueError as error:
                raise KeyProblem(str(error), "calendar") from None
            if self.where is not None:
                raise KeyProblem(
                    "a calendar entry selects customers with `audience:`, not `where:`", "where"
                )
        elif self.audience is not None:
            raise KeyProblem(
                "`audience:` belongs to calendar entries; use `where:` on the event", "audience"
            )
        return self

    @property
    def reentry_policy(self) -> Reentry:
        if self.reentry is not None:
            return self.reentry
        return "always" if self.calendar is not None else "never"

    def as_filter(self) -> EventFilter:
        if self.event is None:
            raise ValueError("a calendar or segment entry has no event")
        return EventFilter(event=self.event, where=self.where)


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


# --- conditions (`if:`), evaluated right before each send -----------------------------


class EventCondition(_Strict):
    """True when the customer has a matching event since entry (or within a lookback)."""

    event: str
    where: str | None = None
    since: Literal["entry"] | Duration = "entry"


class CustomerCondition(_Strict):
    """True when the SQL condition holds on the customer's row (columns of `customers`)."""

    customer: str


class StepCondition(_Strict):
    """True when another step of this journey has this ledger status for the customer."""

    step: str
    status: Literal["sent", "pending", "skipped", "failed", "deferred"] = "sent"


class ReachableCondition(_Strict):
    """True when the customer has an address on the channel and has not opted out of it."""

    reachable: str


class SegmentCondition(_Strict):
    """True when the customer is inside the segment now (segments.yaml)."""

    segment: str


class AllCondition(_Strict):
    all: Annotated[list[Condition], Field(min_length=1)]


class AnyCondition(_Strict):
    any: Annotated[list[Condition], Field(min_length=1)]


class NotCondition(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    not_: Condition = Field(alias="not")


_CONDITION_KEYS = {
    "event": "event",
    "customer": "customer",
    "step": "step",
    "reachable": "reachable",
    "segment": "segment",
    "all": "all",
    "any": "any",
    "not": "not",
}


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {
            EventCondition: "event",
            CustomerCondition: "customer",
            StepCondition: "step",
            ReachableCondition: "reachable",
            SegmentCondition: "segment",
            AllCondition: "all",
            AnyCondition: "any",
            NotCondition: "not",
        }.get(type(value))
    if isinstance(value, dict):
        for key in value:
            if key in _CONDITION_KEYS:
                return _CONDITION_KEYS[key]
    return None


Condition = Annotated[
    Annotated[EventCondition, Tag("event")]
    | Annotated[CustomerCondition, Tag("customer")]
    | Annotated[StepCondition, Tag("step")]
    | Annotated[ReachableCondition, Tag("reachable")]
    | Annotated[SegmentCondition, Tag("segment")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition starts with one of: event, customer, step, "
        "reachable, segment, all, any, not",
    ),
]


# --- timing ------------------------------------------------------------------------------


class Anchor(_Strict):
    """A due time relative to a date column instead of the entry: `from: event.renews_at`
    with `offset: -3d` is three days before renewal; `annual: true` takes the column's next
    anniversary (a birthday) on or after entry."""

    from_: str = Field(alias="from", pattern=r"^(event|customer)\.[a-z_][a-z0-9_]*$")
    offset: Duration = timedelta(0)
    annual: bool = False
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def table(self) -> str:
        return self.from_.split(".")[0]

    @property
    def column(self) -> str:
        return self.from_.split(".")[1]


# --- experiments -------------------------------------------------------------------------


class Variant(_Strict):
    id: Annotated[str, Field(pattern=SLUG, max_length=32)]
    weight: Annotated[float, Field(gt=0)] = 1.0
    template: str | None = None  # default: the step's template
    params: dict[str, str] = Field(default_factory=dict)


def parse_share(value: Any) -> Any:
    """`10%` or 0.1."""
    share = value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"'{value}' is not a percentage; write e.g. 10%") from None
    if isinstance(share, int | float) and not isinstance(share, bool) and not 0 <= share < 1:
        raise ValueError(f"'{value}' is not a share from 0% to below 100%; write e.g. 10%")
    return share


Share = Annotated[float, BeforeValidator(parse_share), Field(ge=0, lt=1)]
ConsentPurpose = Literal["marketing", "personalisation"]


def _timing_kind(value: Any) -> str:
    return "anchor" if isinstance(value, dict | Anchor) else "duration"


# `at:` is a duration (`3d`) or an anchor mapping; a discriminator keeps errors to one.
Timing = Annotated[
    Annotated[Duration, Tag("duration")] | Annotated[Anchor, Tag("anchor")],
    Discriminator(_timing_kind),
]


class Step(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Annotated[str, Field(pattern=SLUG, max_length=64)]
    # Due this long after the entry event, or relative to a date column (Anchor).
    at: Timing = timedelta(0)
    # The step may be sent until this long after its base (the entry, or the anchor's date);
    # later, it is skipped as `expired` rather than sent late. None: no deadline.
    within: Duration | None = None
    send: str  # channel name
    template: str  # file in templates/
    # marketing: needs consent and respects quiet hours and caps; notification: neither.
    purpose: Literal["marketing", "notification"] = "marketing"
    # The consent purposes the customer must have granted; default: marketing for a
    # marketing step, none for a notification.
    consent: list[ConsentPurpose] | None = None
    if_: Condition | None = Field(default=None, alias="if")
    variants: list[Variant] | None = None
    params: dict[str, str] = Field(default_factory=dict)  # channel extras (template code...)

    @model_validator(mode="after")
    def _window_is_sane(self) -> Step:
        offset = self.at.offset if isinstance(self.at, Anchor) else self.at
        if not isinstance(self.at, Anchor) and self.at < timedelta(0):
            raise KeyProblem(
                f"`at` ({format_duration(self.at)}) is negative; an offset before a date "
                "needs an anchor: `at: {from: event.renews_at, offset: -3d}`",
                "at",
            )
        if self.within is not None and self.within <= offset:
            raise KeyProblem(_deadline_message(self.within, offset, self.at), "within")
        if self.variants is not None:
            ids = [v.id for v in self.variants]
            if len(set(ids)) != len(ids):
                repeated = next(i for i in ids if ids.count(i) > 1)
                raise KeyProblem(f"variant id '{repeated}' is used twice", "variants")
        return self

    @property
    def consent_purposes(self) -> list[str]:
        if self.consent is not None:
            return list(self.consent)
        return ["marketing"] if self.purpose == "marketing" else []


def _deadline_message(within: timedelta, offset: timedelta, at: Any) -> str:
    """`within` at or before the step's own due time: the step could never be sent. Say it
    in the file's notation, with the smallest fix (one unit of the `at` past it)."""
    due = "the anchor's `offset`" if isinstance(at, Anchor) else "`at`"
    unit = timedelta(days=1) if offset % timedelta(days=1) == timedelta(0) else timedelta(hours=1)
    return (
        f"`within` ({format_duration(within)}) must be later than {due} "
        f"({format_duration(offset)}), or the step is never sent; move `within` to at least "
        f"{format_duration(offset + unit)}, or remove it"
    )


class Migration(_Strict):
    """What happens to customers inside an older version when `version:` goes up."""

    policy: Literal["keep", "move"] = "keep"  # keep: they finish their own version
    steps: dict[str, str] = Field(default_factory=dict)  # move: old step id -> new step id


def _check_cron(value: str) -> str:
    from datetime import datetime

    try:
        CronSim(value, datetime(2026, 1, 1))
    except (CronSimError, ValueError) as error:
        raise ValueError(f"'{value}' is not a cron expression ({error}); {FORMS}") from None
    return value


class JourneySpec(_Strict):
    journey: Annotated[str, Field(pattern=SLUG, max_length=64)]
    description: str = ""
    version: Annotated[int, Field(ge=1, le=2_147_483_647)] = 1  # the database's INTEGER
    migrate: Migration = Field(default_factory=Migration)
    schedule: Annotated[str, BeforeValidator(_readable_schedule)] = "*/15 * * * *"
    timezone: str = "Asia/Shanghai"
    quiet_hours: Annotated[QuietHours | None, BeforeValidator(parse_quiet_hours)] = Field(
        default_factory=lambda: QuietHours(start=time(20), end=time(8))
    )
    priority: int = 0  # when journeys compete for a customer's capped contacts, higher wins
    holdout: Share = 0.0  # this share of entrants is enrolled and measured but sent nothing
    entry: Entry
    exit_when: EventFilter | None = None
    goal: Goal | None = None
    steps: Annotated[list[Step], Field(min_length=1)]

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not is_time_zone(value):  # the same check as the engine's (siyu/timezones.py)
            raise ValueError(f"'{value}' is not a time zone; e.g. Asia/Shanghai")
        return value

    @model_validator(mode="after")
    def _references(self) -> JourneySpec:
        ids = {step.id for step in self.steps}
        for old, new in self.migrate.steps.items():
            if new not in ids:
                raise KeyProblem(
                    f"migrate.steps maps '{old}' to '{new}', which is not a step"
                    f"{did_you_mean(new, ids)}",
                    "migrate",
                    "steps",
                    old,
                )
        return self

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()
