"""segments.yaml: the thresholds of the RFM tiers, lifecycle stages and activity tags.

Defaults come from the source documents (../shared/domain/traffic-management.md §3.1): the
RFM table is not a partition (its bands overlap and leave gaps), so tiers are evaluated in
the order written, the first match wins, and customers matching none are in `other`.

    rfm:
      window: 365d               # F (orders) and M (spend) count orders in this window
      tiers:
        - {name: rfm-high-value, recency_days: {max: 7}, orders: {min: 5}, spend: {min: 5000}}
        - ...
      other: rfm-other
    lifecycle: {new_days: 30, mature_orders: 5, mature_days: 180, at_risk_days: 30,
                churned_days: 90}
    activity: {high_frequency: 3, per: 7d, silent_days: 30}
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from siyu.language.problems import SpecError
from siyu.language.spec import SLUG, Duration
from siyu.segments.yaml_errors import load_yaml, validation_problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Strict):
    """An inclusive range; a missing end is open."""

    min: float | None = None
    max: float | None = None

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


Name = Annotated[str, Field(pattern=SLUG, max_length=64)]


class RfmTier(_Strict):
    name: Name
    recency_days: Band = Field(default_factory=Band)  # whole days since the last order
    orders: Band = Field(default_factory=Band)  # F: paid orders in the window
    spend: Band = Field(default_factory=Band)  # M: yuan spent in the window

    def matches(self, recency: float | None, orders: float, spend: float) -> bool:
        return (
            self.recency_days.holds(recency)
            and self.orders.holds(orders)
            and self.spend.holds(spend)
        )


def _default_tiers() -> list[RfmTier]:
    return [
        RfmTier(
            name="rfm-high-value",
            recency_days=Band(max=7),
            orders=Band(min=5),
            spend=Band(min=5000),
        ),
        RfmTier(
            name="rfm-potential",
            recency_days=Band(min=8, max=30),
            orders=Band(min=2, max=4),
            spend=Band(min=1000, max=5000),
        ),
        RfmTier(
            name="rfm-active",
            recency_days=Band(min=31, max=90),
            orders=Band(min=1, max=2),
            spend=Band(max=999.99),
        ),
        RfmTier(name="rfm-churned", recency_days=Band(min=91), orders=Band(max=1)),
    ]


class Rfm(_Strict):
    window: Duration = timedelta(days=365)
    tiers: list[RfmTier] = Field(default_factory=_default_tiers)
    other: Name = "rfm-other"


class Lifecycle(_Strict):
    """Stages of buyers, decided in this order: churned, at-risk, new, mature, growing.
    Customers who never bought have no stage."""

    new_days: int = Field(30, ge=1)  # first order this recent, one order: new
    mature_orders: int = Field(5, ge=2)  # this many orders (or a customer this long): mature
    mature_days: int = Field(180, ge=1)
    at_risk_days: int = Field(30, ge=1)  # no order for this long: at risk
    churned_days: int = Field(90, ge=1)  # no order for this long: churned

    @model_validator(mode="after")
    def _ordered(self) -> Lifecycle:
        if self.at_risk_days >= self.churned_days:
            raise ValueError("at_risk_days must be fewer than churned_days")
        return self


class Activity(_Strict):
    high_frequency: int = Field(3, ge=1)  # interactions per `per` to be high-frequency
    per: Duration = timedelta(days=7)
    silent_days: int = Field(30, ge=1)  # no interaction for this long: silent
    # what counts as an interaction besides a paid order
    interactions: list[str] = Field(
        default_factory=lambda: ["browse", "link_clicked", "sms_reply", "coupon_claimed"]
    )


LIFECYCLE_STAGES = ("new", "growing", "mature", "at-risk", "churned")
ACTIVITY_TAGS = ("high-frequency", "silent")


class SegmentsConfig(_Strict):
    rfm: Rfm = Field(default_factory=Rfm)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)
    activity: Activity = Field(default_factory=Activity)

    @model_validator(mode="after")
    def _unique(self) -> SegmentsConfig:
        names = [t.name for t in self.rfm.tiers] + [self.rfm.other]
        clash = sorted({n for n in names if names.count(n) > 1 or n in self.fixed_names()})
        if clash:
            raise ValueError(f"segment names must be unique: {', '.join(clash)}")
        return self

    @staticmethod
    def fixed_names() -> tuple[str, ...]:
        return (*LIFECYCLE_STAGES, *ACTIVITY_TAGS)

    def names(self) -> list[str]:
        return [*(t.name for t in self.rfm.tiers), self.rfm.other, *self.fixed_names()]


def load_segments(path: Path) -> SegmentsConfig:
    """segments.yaml, or the defaults when the file does not exist; problems as SpecError
    with file:line:col and a did-you-mean for misspelt keys."""
    if not path.exists() and not path.is_symlink():  # a device or a link out is refused
        return SegmentsConfig()
    raw = load_yaml(path)
    try:
        return SegmentsConfig.model_validate(raw)
    except ValidationError as error:
        problems = validation_problems(path, raw, error, "bad-segments", SegmentsConfig)
        raise SpecError(problems) from None
