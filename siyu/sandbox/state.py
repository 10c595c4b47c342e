"""Everything the sandbox remembers: messages, calls, tokens, WeCom tasks, idempotency keys.

One lock guards it all; handlers hold it only for bookkeeping, never while sleeping.
"""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from siyu.sandbox.faults import FaultInjector

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class Message:
    id: int
    channel: str  # wecom, wecom_staff, service_account, miniprogram, sms, email, webhook
    endpoint: str
    customer: str  # the address as the provider saw it
    content: str
    key: str  # the correlation/idempotency key duplicates are counted by
    status: str  # sent | pending | refused | failed
    provider_id: str
    created_at: float
    meta: dict[str, Any] = field(default_factory=dict)
    duplicate: bool = False  # an earlier message with the same key was already delivered

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Call:
    endpoint: str
    at: float
    fault: str | None


@dataclass
class WeComTask:
    msgid: str
    sender: str
    external_userids: list[str]
    text: dict[str, Any]
    attachments: list[dict[str, Any]]
    create_time: int
    confirmed: bool = False
    send_time: int = 0
    results: dict[str, int] = field(default_factory=dict)  # external_userid -> status
    message_ids: dict[str, int] = field(default_factory=dict)  # external_userid -> Message.id


@dataclass
class SavedState:
    """The part of the sandbox's memory kept in a state file (tokens and keys are not)."""

    messages: list[Message]
    tasks: list[WeComTask]
    join_ways: dict[str, dict[str, Any]]


_SAVED = TypeAdapter(SavedState)


class SandboxState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults = FaultInjector()
        self._reset_locked()

    def reset(self) -> None:
        with self.lock:
            self._reset_locked()
        self.faults.configure(type(self.faults.config)())

    def _reset_locked(self) -> None:
        self.messages: list[Message] = []
        self.calls: list[Call] = []
        self.delivered: Counter[tuple[str, str]] = Counter()  # (channel, key) -> deliveries
        self.deduped: Counter[tuple[str, str]] = Counter()  # replays absorbed by idempotency
        self.tokens: dict[str, tuple[str, str, float]] = {}  # token -> (provider, app, expires)
        self.stable_tokens: dict[str, str] = {}  # wechat appid -> current stable token
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}  # (scope, key) -> stored
        self.in_flight: set[tuple[str, str]] = set()
        self.tasks: dict[str, WeComTask] = {}
        self.join_ways: dict[str, dict[str, Any]] = {}
        self.received_today: Counter[tuple[str, str]] = Counter()  # (day, euid) -> mass msgs
        self.used_nonces: dict[str, float] = {}  # nonce -> monotonic time first seen
        self.api_calls = 0
        self._ids = itertools.count(1)
        self._provider_ids = itertools.count(700000000000000001)

    # --- bookkeeping ---------------------------------------------------------------------------
    def next_provider_id(self) -> int:
        return next(self._provider_ids)

    def record_call(self, endpoint: str, fault: str | None) -> None:
        with self.lock:
            self.calls.append(Call(endpoint, time.time(), fault))

    def record(
        self,
        channel: str,
        endpoint: str,
        customer: str,
        content: str,
        key: str,
        status: str = "sent",
        provider_id: str = "",
        **meta: Any,
    ) -> Message:
        """Record one delivered message; the caller holds ``self.lock``."""
        self.delivered[(channel, key)] += 1
        msg = Message(
            next(self._ids),
            channel,
            endpoint,
            customer,
            content,
            key,
            status,
            provider_id,
            time.time(),
            meta,
            duplicate=self.delivered[(channel, key)] > 1,
        )
        self.messages.append(msg)
        return msg

    def note_dedup(self, channel: str, key: str) -> None:
        self.deduped[(channel, key)] += 1

    # --- tokens --------------------------------------------------------------------------------
    def issue_token(self, provider: str, app: str, ttl: float) -> str:
        token = f"sbx_{provider}_{secrets.token_urlsafe(24)}"
        self.tokens[token] = (provider, app, time.time() + ttl)
        return token

    def token_error(self, provider: str, token: str | None) -> int | None:
        """None if ``token`` is valid, else the errcode the provider would answer."""
        if not token:
            return 41001
        info = self.tokens.get(token)
        if info is None or info[0] != provider:
            return 40014 if provider == "wecom" else 40001
        if info[2] <= time.time():
            return 42001
        return None

    def expire_tokens(self) -> None:
        now = time.time()
        self.tokens = {t: (p, a, min(e, now - 1)) for t, (p, a, e) in self.tokens.items()}

    def count_api_call(self) -> None:
        """Per business call: apply the `expire_tokens_every` knob."""
        self.api_calls += 1
        every = self.faults.config.expire_tokens_every
        if every and self.api_calls % every == 0:
            self.expire_tokens()

    # --- WeCom tasks ---------------------------------------------------------------------------
    def confirm_task(self, task: WeComTask) -> None:
        """A staff member confirms: compute per-customer status 1/2/3 (lock held)."""
        if task.confirmed:
            return
        task.confirmed = True
        task.send_time = int(time.time())
        day = dt.datetime.now(SHANGHAI).strftime("%Y%m%d")
        limit = self.faults.config.wecom_receive_limit
        for euid in task.external_userids:
            if self.faults.refuses("wecom", euid):
                status = 2
            elif limit is not None and self.received_today[(day, euid)] >= limit:
                status = 3
            else:
                status = 1
                self.received_today[(day, euid)] += 1
            task.results[euid] = status
            msg_id = task.message_ids.get(euid)
            if msg_id is not None:
                msg = self.messages[msg_id - 1]
                msg.status = {1: "sent", 2: "refused", 3: "failed"}[status]
                if status != 1:  # not delivered: it must not count as a delivery
                    self.delivered[(msg.channel, msg.key)] -= 1

    # --- saved state --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Messages, WeCom tasks and join ways as JSON (never pickle), so that `siyu sandbox
        --state` shows them after the process that recorded them has gone."""
        with self.lock:
            saved = SavedState(
                messages=list(self.messages),
                tasks=list(self.tasks.values()),
                join_ways=dict(self.join_ways),
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(_SAVED.dump_json(saved, indent=1))
        tmp.replace(path)  # a reader never sees half a file

    def load(self, path: Path) -> None:
        """Replace what the sandbox remembers with a file written by `save`. A file that is
        not one raises ValueError naming it."""
        try:
            saved = _SAVED.validate_json(path.read_bytes())
        except ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(
                f"{path}: not a sandbox state file ({where}: {first['msg']})"
            ) from None
        ids = sorted(m.id for m in saved.messages)
        if ids != list(range(1, len(ids) + 1)):  # confirm_task finds a message by its id
            raise ValueError(f"{path}: not a sandbox state file (message ids are not 1..n)")
        with self.lock:
            self._reset_locked()
            self.messages = sorted(saved.messages, key=lambda m: m.id)
            self.tasks = {t.msgid: t for t in saved.tasks}
            self.join_ways = dict(saved.join_ways)
            for m in self.messages:
                if m.status in ("sent", "pending"):
                    self.delivered[(m.channel, m.key)] += 1
            last = max((m.id for m in self.messages), default=0)
            self._ids = itertools.count(last + 1)

    # --- reports -------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.lock:
            channels: dict[str, dict[str, int]] = {}
            for m in self.messages:
                c = channels.setdefault(
                    m.channel,
                    {
                        "messages": 0,
                        "delivered": 0,
                        "pending": 0,
                        "refused": 0,
                        "failed": 0,
                        "deduped": 0,
                        "duplicate_keys": 0,
                        "duplicates": 0,
                    },
                )
                c["messages"] += 1
                c["delivered" if m.status == "sent" else m.status] += 1
            for (ch, _key), n in self.deduped.items():
                channels.setdefault(ch, _empty())["deduped"] += n
            duplicates = []
            for (ch, key), n in self.delivered.items():
                if n > 1:
                    c = channels.setdefault(ch, _empty())
                    c["duplicate_keys"] += 1
                    c["duplicates"] += n - 1
                    duplicates.append({"channel": ch, "key": key, "count": n})
            calls = Counter(c.endpoint for c in self.calls)
            return {
                "channels": channels,
                "duplicates": duplicates,
                "calls": dict(calls),
                "faults_fired": dict(self.faults.fired_by_endpoint),
            }


def _empty() -> dict[str, int]:
    return {
        "messages": 0,
        "delivered": 0,
        "pending": 0,
        "refused": 0,
        "failed": 0,
        "deduped": 0,
        "duplicate_keys": 0,
        "duplicates": 0,
    }
