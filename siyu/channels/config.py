"""Typed ``channels.yaml``: pydantic models mirroring the file, unknown keys are errors.

The file holds ids, endpoints, limits and policies but never secret values: a channel names
where its secret lives (``secret_env`` or ``secret_block``). See docs/channels.md.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from siyu.language.durations import parse_duration

DEFAULT_BASE_URL = "http://127.0.0.1:8765"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(_Strict):
    per_second: float = Field(10.0, gt=0)
    burst: int = Field(10, ge=1)


class RetrySettings(_Strict):
    attempts: int = Field(3, ge=1, le=10)
    base_delay: float = Field(0.5, ge=0)
    max_delay: float = Field(8.0, ge=0)
    jitter: float = Field(0.5, ge=0, le=1)
    max_retry_after: float = Field(30.0, ge=0)


_PERIOD = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Quota(_Strict):
    """A per-customer cap the *engine* enforces, e.g. WeCom 1 mass message per customer per day."""

    per_customer: int = Field(ge=1)
    period: str = "1d"  # <n><s|m|h|d|w>

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        if not _PERIOD.match(v.strip()):
            raise ValueError("period must look like 30s, 10m, 1h, 1d or 1w")
        return v.strip()

    @property
    def window(self) -> timedelta:
        return parse_duration(self.period)


class ChannelBase(_Strict):
    base_url: str | None = None  # None: defaults.base_url
    timeout: float | None = Field(None, gt=0)
    rate_limit: RateLimit | None = None
    retry: RetrySettings | None = None
    quota: Quota | None = None
    secret_env: str | None = None
    secret_block: str | None = None


class WecomConfig(ChannelBase):
    type: Literal["wecom"]
    corpid: str
    sender: str  # staff userid whose client confirms the mass message


class WecomGroupInviteConfig(ChannelBase):
    type: Literal["wecom_group_invite"]
    corpid: str
    sender: str
    chat_id: str  # the customer group to invite into (params.chat_id overrides)
    join_way_config_id: str | None = None  # reuse an existing join way instead of creating one
    link_title: str = "点击加入客户群"
    link_desc: str = "长按识别二维码或点击链接入群"
    state: str = "siyu"  # echoed per member in groupchat/get, to attribute joins


class WecomStaffConfig(ChannelBase):
    type: Literal["wecom_staff"]
    corpid: str
    agentid: int
    duplicate_check_interval: int = Field(1800, ge=1, le=14400)


class ServiceAccountConfig(ChannelBase):
    type: Literal["service_account"]
    appid: str
    template_id: str
    data_field: str = "thing1"  # the template field that carries the rendered body
    url: str | None = None


class MiniprogramConfig(ChannelBase):
    type: Literal["miniprogram"]
    appid: str
    template_id: str
    data_field: str = "thing1"
    page: str | None = None
    miniprogram_state: Literal["formal", "trial", "developer"] = "formal"
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] = "zh_CN"


class SmsConfig(ChannelBase):
    type: Literal["sms"]
    access_key_id: str | None = None  # not secret by itself; None = sandbox key on loopback
    access_key_id_env: str | None = None
    sign_name: str
    template_code: str
    param_name: str = "content"  # TemplateParam {"<param_name>": body}
    region_id: str = "cn-hangzhou"
    # SendBatchSms carries no OutId, so a lost answer can only be reconciled by phone+template+time.
    batch_api: bool = False
    # "always": look the OutId up before every send, so a rerun after a crash cannot send twice.
    precheck: Literal["always", "after_failure"] = "always"


class EmailConfig(ChannelBase):
    type: Literal["email"]
    from_email: str
    from_name: str | None = None
    default_subject: str
    reply_to: str | None = None


class WebhookConfig(ChannelBase):
    type: Literal["webhook"]
    path: str = "/hooks/siyu"
    event_type: str = "message.send"


AnyChannel = Annotated[
    WecomConfig
    | WecomGroupInviteConfig
    | WecomStaffConfig
    | ServiceAccountConfig
    | MiniprogramConfig
    | SmsConfig
    | EmailConfig
    | WebhookConfig,
    Field(discriminator="type"),
]
CHANNEL_TYPES = (
    "wecom",
    "wecom_group_invite",
    "wecom_staff",
    "service_account",
    "miniprogram",
    "sms",
    "email",
    "webhook",
)


class Defaults(_Strict):
    base_url: str = DEFAULT_BASE_URL
    timeout: float = Field(10.0, gt=0)
    rate_limit: RateLimit = RateLimit()
    retry: RetrySettings = RetrySettings()


class ChannelsConfig(_Strict):
    allow_remote: bool = False  # this workplace forbids non-loopback traffic unless set
    defaults: Defaults = Defaults()
    channels: dict[str, AnyChannel] = {}

    @model_validator(mode="before")
    @classmethod
    def _type_defaults_to_name(cls, data: Any) -> Any:
        # `wecom:` needs no `type: wecom`; a second SMS channel says `type: sms`.
        if isinstance(data, dict) and isinstance(data.get("channels"), dict):
            channels = {}
            for name, body in data["channels"].items():
                if isinstance(body, dict) and "type" not in body:
                    body = {**body, "type": name}
                channels[name] = body
            data = {**data, "channels": channels}
        return data

    def quotas(self) -> dict[str, Quota]:
        """Per-channel customer quotas for the engine to enforce."""
        return {n: c.quota for n, c in self.channels.items() if c.quota is not None}
