"""What a tick needs besides the database and the clock, gathered in one object."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.base import Channel
from siyu.language.spec import JourneySpec, Step
from siyu.policies import Policies


@dataclass(frozen=True)
class Partition:
    """One of `count` disjoint slices of a step's enrollments (by id modulo `count`). The
    slices of a step run in parallel; claiming makes an overlap harmless anyway."""

    index: int = 0
    count: int = 1


WHOLE = Partition()


@runtime_checkable
class StepRunner(Protocol):
    """Runs one partition of a step elsewhere (siyu.engine.partition_workers.PartitionWorkers:
    in a worker process) and returns its counts."""

    def run_step(
        self,
        spec: JourneySpec,
        step: Step,
        now: datetime,
        journey_id: int | None,
        partition: Partition,
    ) -> Counter[Any]: ...  # siyu.engine.receipts.StepCounts (importing it here: a circle)


@dataclass
class EngineContext:
    sessions: sessionmaker[Session]
    templates_dir: Path
    channels: dict[str, Channel]
    batch_size: int = 500  # enrollments handled per transaction inside one step
    # A step's due enrollments are split into this many partitions, run in parallel by the
    # Prefect flow (flows/journey_flow.py; docs/scale.md). 1: one task per step.
    partitions: int = 1
    # When set, each partition of a step runs in one of these worker processes instead of
    # the calling thread (siyu/engine/partition_workers.py): every core, not one interpreter lock.
    workers: StepRunner | None = None
    # A message whose channel keeps failing is tried this many times (across ticks), then
    # recorded as failed; never dropped silently.
    max_attempts: int = 5
    retry_backoff: timedelta = timedelta(minutes=15)
    # A claimed `sending` row is left alone by other workers this long (in the tick's clock);
    # after it, a crashed worker's messages are sent again with the same idempotency key.
    # Keep it longer than one batch takes to send and shorter than the tick interval.
    send_lease: timedelta = timedelta(minutes=10)
    # A WeCom mass message a staff member has not confirmed after this long is failed.
    pending_timeout: timedelta = timedelta(hours=48)
    # Goals are looked for in enrollments younger than the goal window plus this margin.
    goal_grace: timedelta = timedelta(days=7)
    # Entry and exit events are scanned from the previous tick minus this window, so an event
    # imported late (with an older timestamp) still counts if it is at most this old at import.
    late_events: timedelta = timedelta(days=7)
    channel_params: dict[str, dict[str, str]] = field(default_factory=dict)
    policies: Policies = field(default_factory=Policies)  # caps, fatigue, opt-out words
