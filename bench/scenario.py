"""The benchmark's journey, template, channels and engine context, shared by the benchmark
(bench/step.py, bench/run.py) and the tick driver that the fault test kills (bench/driver.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import Channel
from siyu.channels.config import ChannelsConfig
from siyu.channels.registry import build_channels, load_channel_config
from siyu.channels.token_store import shared_token_caches
from siyu.engine.context import EngineContext
from siyu.language.loader import load_journey
from siyu.language.references import Catalog
from siyu.language.spec import JourneySpec

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = (
    "{{ customer.name }}您好！您在{{ event.store }}买的{{ event.category }}还满意吗？"
    "{{ customer.city }}{{ customer.member_level }}会员专享券已到账（订单{{ event.order_no }}）。"
)
CHANNELS = ("webhook", "sms", "service_account", "wecom", "email")


def write_project(workdir: Path, journey: str, channel: str, at: str = "1d") -> JourneySpec:
    """A one-step journey `journey` on `channel`, personalised from customer and order."""
    templates = workdir / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "hello.j2").write_text(TEMPLATE, encoding="utf-8")
    path = workdir / f"{journey}.yaml"
    path.write_text(
        f"journey: {journey}\nquiet_hours: null\n"
        "entry: {event: order_paid, where: order_seq = 1}\n"
        "exit_when: {event: order_paid, where: order_seq > 1}\n"
        f"steps:\n  - {{id: hello, at: {at}, send: {channel}, template: hello.j2}}\n",
        encoding="utf-8",
    )
    return load_journey(path, Catalog(set(CHANNELS), templates))


def channel_config(*, timeout: float = 10.0, retry_delay: float = 0.01) -> ChannelsConfig:
    """channels.yaml with the client-side rate limits raised (the sandbox has no provider
    quota; the real limits would throttle a benchmark, not the engine), short retry delays,
    and SMS through SendBatchSms (≤100 personalised numbers per call)."""
    raw: dict[str, Any] = load_channel_config(ROOT / "channels.yaml").model_dump()
    raw["defaults"].update(
        timeout=timeout,
        rate_limit={"per_second": 1_000_000, "burst": 1_000_000},
        retry={
            "attempts": 4,
            "base_delay": retry_delay,
            "max_delay": retry_delay * 5,
            "jitter": 0.5,
            "max_retry_after": 2.0,
        },
    )
    for body in raw["channels"].values():
        body.pop("rate_limit", None)
        body.pop("quota", None)
    raw["channels"]["sms"].update(batch_api=True, precheck="after_failure")
    return ChannelsConfig.model_validate(raw)


def engine_context(
    sessions: sessionmaker[Session],
    workdir: Path,
    sandbox_url: str,
    *,
    batch_size: int = 1000,
    timeout: float = 10.0,
) -> EngineContext:
    # access tokens shared through the database, as the deployed flow's processes share them
    channels: dict[str, Channel] = build_channels(
        channel_config(timeout=timeout),
        base_url=sandbox_url,
        token_caches=shared_token_caches(sessions),
    )
    return EngineContext(
        sessions,
        workdir / "templates",
        channels,
        batch_size=batch_size,
        retry_backoff=timedelta(minutes=1),
        max_attempts=20,
    )


def worker_context(
    database_url: str, workdir: str, sandbox_url: str, batch_size: int = 1000
) -> EngineContext:
    """engine_context() built inside a partition worker process
    (siyu/engine/partition_workers.py)."""
    from siyu.storage.engine import make_engine, make_sessionmaker

    sessions = make_sessionmaker(make_engine(database_url))
    return engine_context(sessions, Path(workdir), sandbox_url, batch_size=batch_size)
