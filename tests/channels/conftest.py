"""Fixtures: one sandbox per test session, reset before every test; channels built against it
with tiny backoff delays so fault tests stay fast."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from siyu.channels.base import Channel, OutboundMessage
from siyu.channels.config import ChannelsConfig
from siyu.channels.registry import build_channels, load_channel_config
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox, start_sandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox() as running:
        yield running


@pytest.fixture
def client(sandbox: RunningSandbox) -> Iterator[SandboxClient]:
    with SandboxClient(sandbox.url) as c:
        c.reset()
        yield c


def fast_config(**overrides: Any) -> ChannelsConfig:
    """channels.yaml with millisecond backoff, a short client timeout and a high rate limit."""
    base = load_channel_config(ROOT / "channels.yaml").model_dump()
    base["defaults"].update(
        timeout=0.5,
        retry={
            "attempts": 4,
            "base_delay": 0.01,
            "max_delay": 0.05,
            "jitter": 0.5,
            "max_retry_after": 2.0,
        },
        rate_limit={"per_second": 1000, "burst": 1000},
    )
    for name, body in base["channels"].items():
        body.pop("rate_limit", None)
        body.update(overrides.get(name, {}))
    return ChannelsConfig.model_validate(base)


@pytest.fixture
def channels(client: SandboxClient, sandbox: RunningSandbox) -> Iterator[dict[str, Channel]]:
    built = build_channels(fast_config(), base_url=sandbox.url, seed=7)
    yield built
    for ch in built.values():
        ch.close()


def batch(
    prefix: str, n: int, address: Any, body: str = "您的积分即将到期"
) -> list[OutboundMessage]:
    return [OutboundMessage(f"{prefix}-{i}", i, address(i), body) for i in range(n)]
