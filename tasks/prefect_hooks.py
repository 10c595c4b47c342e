"""Prefect's side of siyu.hooks: the library never imports Prefect; the Prefect layer (this
package) plugs in where events go, which logger a run writes to and how a Secret block is read."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.blocks.system import Secret as PrefectSecret
from prefect.context import FlowRunContext, TaskRunContext
from prefect.events import emit_event

from siyu.hooks import Logger, hooks

log = logging.getLogger("siyu.alerts.breaker")


def _in_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def emit_prefect_event(name: str, channel: str, now: datetime, detail: dict[str, Any]) -> None:
    """Inside a Prefect flow or task run only: elsewhere (tests, backtests) Prefect would
    start a temporary server just to receive it. The alert_events row is kept regardless."""
    if not _in_run():
        return
    try:
        emit_event(
            event=name,
            resource={"prefect.resource.id": f"siyu.channel.{channel}"},
            occurred=now,
            payload={k: str(v) for k, v in detail.items()},
        )
    except Exception as error:  # no Prefect API reachable: the alert event row remains
        log.warning("could not emit the Prefect event %s: %s", name, error)


def prefect_run_logger() -> Logger | None:
    """The Prefect run's logger inside a flow or task run (its log in the UI)."""
    return get_run_logger() if _in_run() else None


def read_secret_block(name: str) -> str:
    block: Any = PrefectSecret.load(name)  # sync in a sync context
    return str(block.get())


def install() -> None:
    hooks.emit_event = emit_prefect_event
    hooks.run_logger = prefect_run_logger
    hooks.read_secret_block = read_secret_block
