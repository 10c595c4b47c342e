"""What a task receives (settings and ids, all serialisable) and the engine context each
process builds once from them.

A task never receives an EngineContext or a session: it gets a `TickSettings` (database URL,
project directory, channel gateway, throttle flag, partitions), the journey's name and version
and `now`. `engine_context` builds the context on first use in the process that runs the task
(the flow's own, or a worker of a process or Dask task runner) and keeps it, keyed by those
settings, until the flow releases it at the end of its run. So Prefect's ProcessPoolTaskRunner
and prefect-dask can run the tasks; with the default thread runner every task of a run shares
the contexts the flow's process built. Access tokens are kept once per process and shared,
through the database, with every other process (siyu/channels/token_store.py); so are the
channels' rate limits (siyu/channels/rate_store.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from siyu.channels.rate_store import shared_rate_limits
from siyu.channels.token_store import shared_token_caches
from siyu.channels.tokens import TokenCaches
from siyu.engine.context import EngineContext
from siyu.engine.partition_workers import PartitionWorkers
from siyu.errors import ConfigError
from siyu.language.spec import JourneySpec
from siyu.project import Project
from siyu.project import worker_context as project_worker_context
from siyu.settings import PartitionRunner
from siyu.storage.engine import make_engine, make_sessionmaker
from tasks.prefect_hooks import install


@dataclass(frozen=True)
class TickSettings:
    """Where a tick runs: everything a task needs to rebuild its engine context."""

    project_dir: str
    database_url: str
    channel_base_url: str | None = None
    throttle: bool = True
    partitions: int = 1  # a step's due enrollments split into this many tasks
    runner: PartitionRunner = "threads"  # where the partitions run: tasks/partition_runners.py
    dask_address: str | None = None  # the scheduler of runner "dask"; None: a local cluster
    # the flow run's id: what a process builds for a run is its own, and released with it
    # (a Dask worker outlives the run and may serve two journeys' runs at once)
    run_id: str = ""


_lock = threading.Lock()
_engines: dict[TickSettings, Engine] = {}
# one per database per process, shared by every partition's channels (and, through the
# database, with every other process): siyu/channels/token_store.py
_tokens: dict[TickSettings, TokenCaches] = {}
_contexts: dict[tuple[TickSettings, int], EngineContext] = {}
_workers: dict[TickSettings, PartitionWorkers] = {}
_specs: dict[tuple[TickSettings, str, int], JourneySpec] = {}
_runs: dict[TickSettings, int] = {}  # flow runs of this process using these settings now


def project_of(settings: TickSettings) -> Project:
    return Project(Path(settings.project_dir))


def engine_context(settings: TickSettings, slot: int = 0) -> EngineContext:
    """The context of partition `slot` (each partition its own channel clients), built once
    per process."""
    with _lock:
        ctx = _contexts.get((settings, slot))
        if ctx is not None:
            return ctx
        engine = _engines.get(settings)
        if engine is None:
            engine = _engines[settings] = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        tokens = _tokens.get(settings)
        if tokens is None:
            tokens = _tokens[settings] = shared_token_caches(sessions)
        project = project_of(settings)
        channels = project.build_channels(
            settings.channel_base_url,
            throttle=settings.throttle,
            token_caches=tokens,
            rate_limits=shared_rate_limits(sessions),  # one bucket per channel for the fleet
        )
        ctx = project.engine_context(sessions, channels)
        if settings.runner == "processes" and settings.partitions > 1:
            ctx.workers = _partition_workers(settings)
        _contexts[(settings, slot)] = ctx
        return ctx


def _partition_workers(settings: TickSettings) -> PartitionWorkers:
    workers = _workers.get(settings)
    if workers is None:
        factory = partial(
            worker_context,
            settings.project_dir,
            settings.database_url,
            settings.channel_base_url,
            settings.throttle,
        )
        workers = _workers[settings] = PartitionWorkers(factory, settings.partitions)
    return workers


def worker_context(
    root: str, database_url: str, channel_base_url: str | None, throttle: bool = True
) -> EngineContext:
    """The context a partition worker process builds for itself, with Prefect plugged in
    there too (a channel's Secret block is read in the worker)."""
    install()
    return project_worker_context(root, database_url, channel_base_url, throttle)


def journey_spec(settings: TickSettings, journey: str, version: int | None = None) -> JourneySpec:
    """The journey as the flow checked it at the start of its run (read once per process);
    refused when its file now holds another version."""
    with _lock:
        for (known, name, _), spec in _specs.items():
            if known == settings and name == journey and version in (None, spec.version):
                return spec
    spec = project_of(settings).journey(journey)
    if version is not None and spec.version != version:
        raise ConfigError(
            f"journey '{journey}' changed from version {version} to {spec.version} during the "
            "tick; run again"
        )
    with _lock:
        _specs[(settings, journey, spec.version)] = spec
    return spec


@contextmanager
def tick_resources(settings: TickSettings) -> Iterator[None]:
    """For the length of a flow run: afterwards, when no other run of this process uses the
    same settings, what was built for them is released."""
    with _lock:
        _runs[settings] = _runs.get(settings, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _runs[settings] -= 1
            last = _runs[settings] == 0
            if last:
                del _runs[settings]
        if last:
            release(settings)


def release(settings: TickSettings) -> None:
    """Close what this process built for `settings`: channel clients, worker processes, the
    database engine; forget the journeys read (a later run reads the files again)."""
    with _lock:
        contexts = [ctx for (known, _), ctx in _contexts.items() if known == settings]
        for slot_key in [key for key in _contexts if key[0] == settings]:
            del _contexts[slot_key]
        for spec_key in [key for key in _specs if key[0] == settings]:
            del _specs[spec_key]
        workers = _workers.pop(settings, None)
        _tokens.pop(settings, None)
        engine = _engines.pop(settings, None)
    if workers is not None:
        workers.close()
    for ctx in contexts:
        for channel in ctx.channels.values():
            channel.close()
    if engine is not None:
        engine.dispose()
