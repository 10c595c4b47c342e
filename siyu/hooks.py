"""What the orchestration layer plugs into the library, which never imports Prefect.

tasks/ (the Prefect tasks) installs Prefect's versions when it is imported
(tasks/prefect_hooks.py); without them (tests, backtests, the benchmark) the defaults below
apply: no event is emitted, warnings go to the module's own logger, and a channel that names a
Prefect Secret block cannot be built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from siyu.errors import ConfigError

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]
# (event name, channel, when, detail): a circuit breaker opened or closed
EventSink = Callable[[str, str, datetime, dict[str, Any]], None]


def _no_event(name: str, channel: str, now: datetime, detail: dict[str, Any]) -> None:
    return None


def _no_run_logger() -> Logger | None:
    return None


def _no_secret_block(name: str) -> str:
    raise ConfigError(
        f"secret_block {name!r}: Prefect Secret blocks are read only inside a Prefect flow "
        "(set secret_env instead to run without one)"
    )


@dataclass
class Hooks:
    emit_event: EventSink = _no_event
    # the current run's logger (its log in the Prefect UI), or None outside a run
    run_logger: Callable[[], Logger | None] = _no_run_logger
    # the value of a named secret block
    read_secret_block: Callable[[str], str] = _no_secret_block


hooks = Hooks()


def run_logger(fallback: Logger) -> Logger:
    """The run's logger inside a flow or task run, else `fallback`."""
    return hooks.run_logger() or fallback
