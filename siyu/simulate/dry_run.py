"""Channels that send nothing: they implement siyu.channels.base.Channel, keep a count of what
they were given per local day and answer `sent`, so the engine records a normal ledger."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from siyu.channels.base import OutboundMessage, Receipt


@dataclass
class DryRunChannel:
    name: str
    identity_kind: str
    max_batch: int = 1000
    today: date | None = None  # set by the simulation before each tick
    volume: Counter[date] = field(default_factory=Counter)

    def send_batch(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        if self.today is not None:
            self.volume[self.today] += len(messages)
        return [Receipt(m.idempotency_key, "sent", provider_message_id="dry-run") for m in messages]

    def close(self) -> None:
        pass


def dry_run_channels(kinds: dict[str, str]) -> dict[str, DryRunChannel]:
    return {name: DryRunChannel(name, kind) for name, kind in kinds.items()}
