"""Load ``channels.yaml`` and build the channel adapters the engine uses.

    load_channel_config(path) -> ChannelsConfig       typed, unknown keys are errors
    build_channels(config, base_url=None) -> {name: Channel}

``base_url`` overrides every channel's base_url (tests and the demo start the sandbox on a free
port). Any base_url that is not loopback is refused unless the file sets ``allow_remote: true``.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from siyu.channels.adapter import BatchChannel, Runtime
from siyu.channels.backoff import RetryPolicy
from siyu.channels.base import Channel
from siyu.channels.config import (
    CHANNEL_TYPES,
    AnyChannel,
    ChannelBase,
    ChannelsConfig,
    EmailConfig,
    MiniprogramConfig,
    ServiceAccountConfig,
    SmsConfig,
    WebhookConfig,
    WecomConfig,
    WecomGroupInviteConfig,
    WecomStaffConfig,
)
from siyu.channels.email import EmailChannel
from siyu.channels.http_client import ProviderHttp
from siyu.channels.ratelimit import LimiterFactory, own_limiter
from siyu.channels.secrets import (
    SANDBOX_ALIYUN_ACCESS_KEY_ID,
    SANDBOX_DEV_SECRETS,
    Secret,
    from_env,
    from_prefect_block,
)
from siyu.channels.sms import SmsChannel
from siyu.channels.tokens import TokenCaches
from siyu.channels.webhook import WebhookChannel
from siyu.channels.wechat import MiniprogramChannel, ServiceAccountChannel, WeChatApi
from siyu.channels.wecom import WecomChannel, WecomGroupInviteChannel
from siyu.channels.wecom_api import WeComApi
from siyu.channels.wecom_staff import WecomStaffChannel
from siyu.errors import ConfigError
from siyu.language.bounded_yaml import load_settings_yaml
from siyu.language.positions import position
from siyu.language.problems import SpecError, did_you_mean, format_problem


class ChannelConfigError(ConfigError, ValueError):
    """channels.yaml is invalid; the message lists every problem as file:line:col: ..."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(
            "\n".join(problems) + f"\n{n} error{'s' if n != 1 else ''} in channels config"
        )


# --- loading --------------------------------------------------------------------------------------
def load_channel_config(path: str | Path) -> ChannelsConfig:
    path = Path(path)
    try:
        raw = load_settings_yaml(path)  # bounded: size, aliases, depth; a device is refused
    except SpecError as error:
        raise ChannelConfigError([format_problem(p) for p in error.problems]) from None
    return parse_channel_config(raw, source=str(path))


def parse_channel_config(raw: Any, source: str = "<channels>") -> ChannelsConfig:
    try:
        return ChannelsConfig.model_validate(_plain(raw))
    except ValidationError as exc:
        raise ChannelConfigError(_describe(exc, raw, source)) from None


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _known_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


_BY_TYPE: dict[str, type[ChannelBase]] = {
    "wecom": WecomConfig,
    "wecom_group_invite": WecomGroupInviteConfig,
    "wecom_staff": WecomStaffConfig,
    "service_account": ServiceAccountConfig,
    "miniprogram": MiniprogramConfig,
    "sms": SmsConfig,
    "email": EmailConfig,
    "webhook": WebhookConfig,
}


def _describe(exc: ValidationError, raw: Any, source: str) -> list[str]:
    problems: list[tuple[tuple[int, int], str]] = []
    for err in exc.errors():
        loc = list(err["loc"])
        # pydantic puts the union tag in the path (channels.wecom.wecom.sender): drop it.
        if len(loc) >= 3 and loc[0] == "channels" and loc[2] in CHANNEL_TYPES:
            del loc[2]
        dotted = ".".join(str(p) for p in loc)
        msg = err["msg"]
        hint = ""
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            hint = did_you_mean(str(loc[-1]), _siblings(loc, raw))
        elif err["type"] == "union_tag_invalid":
            tag = str((err.get("ctx") or {}).get("tag", ""))
            msg = f"unknown channel type {tag!r}"
            hint = did_you_mean(tag, list(CHANNEL_TYPES))
            loc = [*loc, "type"]
        elif err["type"] == "missing":
            msg = "required key is missing"
        line, col = position(raw, tuple(loc), key=True)
        where = f"{source}:{line}:{col}" if line else source
        problems.append(((line, col), f"{where}: {dotted}: {msg}{hint}"))
    return [p for _, p in sorted(problems)]


def _siblings(loc: list[Any], raw: Any) -> list[str]:
    if len(loc) >= 2 and loc[0] == "channels":
        node = raw.get("channels", {}).get(loc[1]) if isinstance(raw, dict) else None
        kind = node.get("type", loc[1]) if isinstance(node, dict) else loc[1]
        model = _BY_TYPE.get(str(kind))
        if len(loc) == 3 and model is not None:
            return _known_keys(model)
        if len(loc) == 4 and loc[2] in ("rate_limit", "retry", "quota") and model is not None:
            sub = {"rate_limit": "RateLimit", "retry": "RetrySettings", "quota": "Quota"}[loc[2]]
            from siyu.channels import config as cfg

            return _known_keys(getattr(cfg, sub))
    if len(loc) == 1:
        return _known_keys(ChannelsConfig)
    if len(loc) == 2 and loc[0] == "defaults":
        from siyu.channels.config import Defaults

        return _known_keys(Defaults)
    return []


# --- building -------------------------------------------------------------------------------------
# The adapter class of each channel type: its `identity_kind` is known without building it.
ADAPTER_CLASSES: dict[str, type[BatchChannel]] = {
    "wecom": WecomChannel,
    "wecom_group_invite": WecomGroupInviteChannel,
    "wecom_staff": WecomStaffChannel,
    "service_account": ServiceAccountChannel,
    "miniprogram": MiniprogramChannel,
    "sms": SmsChannel,
    "email": EmailChannel,
    "webhook": WebhookChannel,
}


def identity_kinds(config: ChannelsConfig) -> dict[str, str]:
    """Channel name → the customer identity it addresses, from the config alone: no adapter
    is built and no secret is read (validate, preview and simulate run without secrets)."""
    return {
        name: str(ADAPTER_CLASSES[ch.type].identity_kind) for name, ch in config.channels.items()
    }


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DEV_SECRET_FOR = {
    "wecom": "wecom",
    "wecom_group_invite": "wecom",
    "wecom_staff": "wecom",
    "service_account": "wechat",
    "miniprogram": "wechat",
    "sms": "aliyun",
    "email": "sendgrid",
    "webhook": "webhook",
}


def resolve_secret(name: str, ch: ChannelBase, kind: str, base_url: str) -> Secret:
    """Environment variable, else Prefect Secret block, else (loopback only) the sandbox secret."""
    if ch.secret_env:
        secret = from_env(ch.secret_env)
        if secret is not None:
            return secret
    if ch.secret_block:
        return from_prefect_block(ch.secret_block)
    if is_loopback(base_url):
        return Secret(SANDBOX_DEV_SECRETS[_DEV_SECRET_FOR[kind]], "sandbox-dev-secret")
    where = f"environment variable {ch.secret_env}" if ch.secret_env else "secret_env/secret_block"
    raise ChannelConfigError([f"channels.{name}: no secret found ({where} is not set)"])


def build_channels(
    config: ChannelsConfig,
    base_url: str | None = None,
    *,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    seed: int | None = None,
    token_caches: TokenCaches | None = None,
    throttle: bool = True,
    rate_limits: LimiterFactory = own_limiter,
) -> dict[str, Channel]:
    """One adapter per configured channel. ``transport`` (an httpx.MockTransport) and ``sleep``
    exist for tests; ``seed`` makes backoff jitter deterministic. ``throttle=False`` drops the
    client-side rate limits, only for the local sandbox (which has none): it is refused for
    any channel whose base_url is not loopback, where the limits protect a real provider.
    ``rate_limits`` makes each channel's limiter: this process's own by default, shared by the
    fleet with siyu.channels.rate_store.shared_rate_limits."""
    caches = token_caches or TokenCaches()
    problems: list[str] = []
    resolved: list[tuple[str, AnyChannel, str]] = []
    for name, ch in config.channels.items():
        url = (base_url or ch.base_url or config.defaults.base_url).rstrip("/")
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            problems.append(f"channels.{name}.base_url: {url!r} is not an http(s) URL")
        elif not is_loopback(url) and not config.allow_remote:
            problems.append(
                f"channels.{name}.base_url: {url!r} is not a loopback address; "
                "set `allow_remote: true` to send to a real provider"
            )
        elif not throttle and not is_loopback(url):
            problems.append(
                f"channels.{name}.base_url: {url!r}: rate limits can be dropped only for "
                "the local sandbox (a loopback address)"
            )
        resolved.append((name, ch, url))
    if problems:
        raise ChannelConfigError(problems)

    channels: dict[str, Channel] = {}
    for name, ch, url in resolved:
        kind = ch.type
        rl = ch.rate_limit or config.defaults.rate_limit
        rs = ch.retry or config.defaults.retry
        http = ProviderHttp(
            url,
            timeout=ch.timeout or config.defaults.timeout,
            limiter=rate_limits(name, url, rl.per_second, rl.burst) if throttle else None,
            transport=transport,
        )
        runtime = Runtime(
            http=http,
            policy=RetryPolicy(
                rs.attempts, rs.base_delay, rs.max_delay, rs.jitter, rs.max_retry_after
            ),
            sleep=sleep,
            rng=random.Random(seed),
        )
        secret = resolve_secret(name, ch, kind, url)
        channels[name] = _make(name, ch, runtime, secret, caches, url)
    return channels


def _make(
    name: str, ch: ChannelBase, rt: Runtime, secret: Secret, caches: TokenCaches, url: str
) -> BatchChannel:
    if isinstance(ch, (WecomConfig, WecomGroupInviteConfig, WecomStaffConfig)):
        api = WeComApi(
            rt.http, ch.corpid, secret, caches.get("wecom", url, ch.corpid, secret.reveal())
        )
        if isinstance(ch, WecomConfig):
            return WecomChannel(name, rt, ch, api)
        if isinstance(ch, WecomGroupInviteConfig):
            return WecomGroupInviteChannel(name, rt, ch, api)
        return WecomStaffChannel(name, rt, ch, api)
    if isinstance(ch, (ServiceAccountConfig, MiniprogramConfig)):
        wx = WeChatApi(
            rt.http, ch.appid, secret, caches.get("wechat", url, ch.appid, secret.reveal())
        )
        if isinstance(ch, ServiceAccountConfig):
            return ServiceAccountChannel(name, rt, ch, wx)
        return MiniprogramChannel(name, rt, ch, wx)
    if isinstance(ch, SmsConfig):
        ak = ch.access_key_id
        if ch.access_key_id_env:
            env = from_env(ch.access_key_id_env)
            ak = env.reveal() if env else ak
        if ak is None:
            if not is_loopback(url):
                raise ChannelConfigError([f"channels.{name}: access_key_id is not set"])
            ak = SANDBOX_ALIYUN_ACCESS_KEY_ID
        return SmsChannel(name, rt, ch, ak, secret)
    if isinstance(ch, EmailConfig):
        return EmailChannel(name, rt, ch, secret)
    if isinstance(ch, WebhookConfig):
        return WebhookChannel(name, rt, ch, secret)
    raise AssertionError(f"unhandled channel type {type(ch).__name__}")  # pragma: no cover
