"""An in-memory channel for engine tests: records every message it is given and answers with
the outcome a test chooses. The real adapters are tested over HTTP against the sandbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from siyu.channels.base import OutboundMessage, Receipt


@dataclass
class RecordingChannel:
    name: str
    identity_kind: str
    max_batch: int = 100
    answer: Callable[[OutboundMessage], Receipt] | None = None
    calls: list[list[OutboundMessage]] = field(default_factory=list)

    @property
    def messages(self) -> list[OutboundMessage]:
        return [m for call in self.calls for m in call]

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        assert len(messages) <= self.max_batch
        self.calls.append(list(messages))
        if self.answer is not None:
            return [self.answer(m) for m in messages]
        return [
            Receipt(m.idempotency_key, "sent", provider_message_id=f"m-{m.idempotency_key[:8]}")
            for m in messages
        ]

    def close(self) -> None:
        pass


def recording_channels() -> dict[str, RecordingChannel]:
    kinds = {
        "wecom_group_invite": "wecom_external_userid",
        "wecom": "wecom_external_userid",
        "service_account": "wechat_openid",
        "sms": "mobile",
        "email": "email",
        "webhook": "customer_id",
        "miniprogram": "miniprogram_openid",
    }
    return {name: RecordingChannel(name, kind) for name, kind in kinds.items()}
