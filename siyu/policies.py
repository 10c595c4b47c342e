"""Contact-pressure policies shared by every journey (policies.yaml at the project root):
frequency caps per channel or across channels, fatigue back-off, opt-out reply keywords.

    caps:
      - {name: sms-2-days, channels: [sms], max: 1, per: 2d}      # rolling window
      - {name: sms-month, channels: [sms], max: 8, per: month}    # calendar, customer's zone
      - {name: all-channels, channels: all, max: 6, per: week}    # across every channel
    fatigue: {after: 3, pause: 14d}
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from siyu.language.bounded_yaml import load_settings_yaml
from siyu.language.positions import position
from siyu.language.problems import Problem, SpecError
from siyu.language.spec import Duration

CalendarPeriod = Literal["day", "week", "month"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cap(_Strict):
    name: str
    channels: list[str] | Literal["all"]
    max: Annotated[int, Field(ge=1)]
    per: Duration | CalendarPeriod

    def applies_to(self, channel: str) -> bool:
        return self.channels == "all" or channel in self.channels


class Fatigue(_Strict):
    after: Annotated[int, Field(ge=1)] = 3  # consecutive marketing messages without a reply
    pause: Duration = timedelta(days=14)
    interactions: list[str] = Field(
        default_factory=lambda: [
            "link_clicked",
            "sms_reply",
            "coupon_claimed",
            "group_joined",
            "order_paid",
        ]
    )


class Policies(_Strict):
    caps: list[Cap] = Field(default_factory=list)
    fatigue: Fatigue | None = None
    # An SMS reply with one of these words (case-insensitive, trimmed) opts out of SMS.
    opt_out_words: list[str] = Field(default_factory=lambda: ["T", "TD", "R", "N", "退订"])


def load_policies(path: Path) -> Policies:
    """The policies file, or no policies when it does not exist."""
    if not path.exists() and not path.is_symlink():
        return Policies()
    raw = load_settings_yaml(path)  # bounded; a device or a link out is refused, not skipped
    try:
        return Policies.model_validate(raw)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            loc = tuple(p for p in item["loc"] if not str(p).startswith("function-"))
            line, col = position(raw, loc)
            where = ".".join(str(p) for p in loc)
            problems.append(
                Problem(
                    str(path),
                    line,
                    col,
                    "bad-policy",
                    f"{where}: {str(item['msg']).removeprefix('Value error, ')}",
                )
            )
        raise SpecError(problems) from None
