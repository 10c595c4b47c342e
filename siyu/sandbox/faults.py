"""Fault knobs of the sandbox gateway, and the seeded injector that applies them.

A rule matches endpoints by glob (``sms.SendSms``, ``wecom.*``, ``*``) and fires with a
probability (``rate``), on every Nth matching call (``every``), and/or at most ``times`` times.
With a ``seed`` the sequence of fired faults is reproducible for the same sequence of calls.

Kinds:
    error                 the provider's own error: ``code`` (WeCom/WeChat errcode, Aliyun Code,
                          or an HTTP status for SendGrid / webhooks), optional HTTP ``status``
    http                  a bare HTTP ``status`` (500, 502, 503...), request not applied
    rate_limit            HTTP 429 with ``Retry-After: retry_after``
    timeout               hang ``hang_seconds`` before processing (request NOT applied)
    timeout_after_commit  process and record the request, then hang: the client's timeout fires
                          although the message went out (exposes missing idempotency)
"""

from __future__ import annotations

import fnmatch
import random
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["error", "http", "rate_limit", "timeout", "timeout_after_commit"]


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = "*"
    kind: FaultKind = "error"
    rate: float = Field(1.0, ge=0, le=1)
    every: int | None = Field(None, ge=1)
    times: int | None = Field(None, ge=0)
    code: str | int | None = None
    status: int | None = Field(None, ge=100, le=599)
    retry_after: float = Field(1.0, ge=0)


class FaultConfig(BaseModel):
    """The body of ``POST /_sandbox/faults`` (it replaces the previous configuration)."""

    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    latency_ms: float = Field(0.0, ge=0)  # added to every provider call
    hang_seconds: float = Field(3.0, ge=0)  # how long timeout faults hold the response
    rules: list[FaultRule] = []
    token_ttl: float = Field(7200.0, gt=0)  # expires_in for newly issued tokens
    expire_tokens_every: int | None = Field(None, ge=1)  # expire all tokens every N API calls
    # addresses that refuse: not a friend (wecom), not following (service_account),
    # unsubscribed (miniprogram, sms, email), 410 Gone (webhook; customer id)
    refuse: dict[str, list[str]] = {}
    # addresses the provider rejects as invalid ids (fail_list, 40003, MOBILE_NUMBER_ILLEGAL...)
    invalid: dict[str, list[str]] = {}
    wecom_receive_limit: int | None = Field(None, ge=0)  # mass messages per customer per day
    auto_confirm: bool = False  # staff confirm WeCom mass messages immediately


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure(FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._matches = [0] * len(config.rules)
            self._fired = [0] * len(config.rules)
            self.fired_by_endpoint: dict[str, int] = {}

    def decide(self, endpoint: str) -> FaultRule | None:
        """The rule that fires for this call of ``endpoint``, if any (first match wins)."""
        with self._lock:
            for i, rule in enumerate(self.config.rules):
                if not fnmatch.fnmatchcase(endpoint, rule.endpoint):
                    continue
                self._matches[i] += 1
                if rule.times is not None and self._fired[i] >= rule.times:
                    continue
                if rule.every is not None and self._matches[i] % rule.every != 0:
                    continue
                if self._rng.random() >= rule.rate:
                    continue
                self._fired[i] += 1
                self.fired_by_endpoint[endpoint] = self.fired_by_endpoint.get(endpoint, 0) + 1
                return rule
            return None

    def refuses(self, channel: str, address: str) -> bool:
        return address in self.config.refuse.get(channel, [])

    def invalid(self, channel: str, address: str) -> bool:
        return address in self.config.invalid.get(channel, [])
