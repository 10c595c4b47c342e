"""alerts.yaml: the channel circuit breaker and the metric rules.

    breaker:                    # per channel, over the send ledger
      window: 1h                # sliding window of attempts
      failure_rate: 15%         # above this the channel's breaker opens
      min_attempts: 20          # fewer attempts in the window never open it
      cool_down: 30m            # held this long, then a half-open probe
      probe: 10                 # messages let through while half-open
    rules:
      - name: churn-recall      # source: churn above 5% three days running → recall
        metric: churn_rate
        above: 5%
        days: 3
        start_journey: churn-recall
      - name: wecom-unread      # WeCom messages left unanswered → staff follow-up list
        metric: wecom_unread_rate
        above: 15%
        follow_up: true

Defaults come from ../shared/domain/traffic-management.md §4.2 (churn > 5 % three days in a
row starts a recall) and the 15 % interaction threshold of §3.3/§4.6.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from siyu.language.positions import position
from siyu.language.problems import Problem, SpecError, did_you_mean
from siyu.language.spec import SLUG, Duration, Share, _Strict
from siyu.segments.yaml_errors import load_yaml, validation_problems

Metric = Literal["churn_rate", "wecom_unread_rate"]


class Breaker(_Strict):
    window: Duration = timedelta(hours=1)
    failure_rate: Share = 0.15
    min_attempts: int = Field(20, ge=1)
    cool_down: Duration = timedelta(minutes=30)
    probe: int = Field(10, ge=1)


class Rule(_Strict):
    name: Annotated[str, Field(pattern=SLUG, max_length=64)]
    metric: Metric
    above: Share
    days: int = Field(1, ge=1)  # consecutive days above the threshold before it fires
    start_journey: str | None = None  # tick this journey at once when the rule fires
    follow_up: bool = False  # create staff follow-up tasks (wecom_unread_rate)
    channel: str = "wecom"  # the channel wecom_unread_rate looks at
    wait: Duration = timedelta(hours=48)  # unread: no interaction this long after the send

    @model_validator(mode="after")
    def _acts(self) -> Rule:
        if self.start_journey is None and not self.follow_up:
            raise ValueError(f"rule '{self.name}' needs an action: start_journey or follow_up")
        if self.follow_up and self.metric != "wecom_unread_rate":
            raise ValueError("follow_up tasks come from wecom_unread_rate (who left it unread)")
        return self


class AlertsConfig(_Strict):
    breaker: Breaker = Field(default_factory=Breaker)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return self


def load_alerts(path: Path, journeys: list[str] | None = None) -> AlertsConfig:
    """alerts.yaml (defaults without it). With `journeys`, a rule's `start_journey` must name
    one of them (did-you-mean otherwise)."""
    if not path.exists() and not path.is_symlink():  # a device or a link out is refused
        return AlertsConfig()
    raw = load_yaml(path)
    try:
        config = AlertsConfig.model_validate(raw)
    except ValidationError as error:
        problems = validation_problems(path, raw, error, "bad-alerts", AlertsConfig)
        raise SpecError(problems) from None
    if journeys is not None:
        problems = [
            Problem(
                str(path),
                *position(raw, ("rules", index, "start_journey")),
                "unknown-journey",
                f"rules.{index}.start_journey: no journey named '{rule.start_journey}'"
                f"{did_you_mean(rule.start_journey, journeys)} "
                f"(journeys: {', '.join(sorted(journeys)) or 'none'})",
            )
            for index, rule in enumerate(config.rules)
            if rule.start_journey is not None and rule.start_journey not in journeys
        ]
        if problems:
            raise SpecError(problems)
    return config
