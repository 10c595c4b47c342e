"""A step's partitions in worker processes, so that a large step uses every core.

Partitions in threads (the default) share one interpreter lock, and most of a send is Python
work: deciding, rendering, signing, building the ledger statements. With
`EngineContext.workers` set, each partition's slice is handed to a worker process instead;
the partition's Prefect task (a thread) waits for it, so the Prefect UI looks the same.

Each worker process builds its own EngineContext once, on first use, from a picklable
factory: a module-level function with its arguments, e.g.
`functools.partial(siyu.project.worker_context, root, database_url, channel_base_url)`. It
keeps that context (its database connections, its channel clients, its copy of the access
tokens every process shares through the database) for the pool's life. Claiming
(siyu/engine/claims.py) makes processes exactly as safe as threads: a row is sent by the
worker that claimed it, whichever process that is.

Workers are forked from a `forkserver`, never from the flow's process: forking a process whose
other threads hold locks (Prefect's, SQLAlchemy's pool, httpx's) can deadlock the child, while
the forkserver is a single-threaded process that has imported this module and the factory's
module once. A worker then starts in milliseconds instead of importing siyu and Prefect anew
(with `spawn` that was 2-2.5 s of CPU per worker per flow run on 2 cores; measured with
tests/test_partitions.py, whose nine process-mode ticks took 62 s with `spawn` and 16 s with the
forkserver). The forkserver keeps the environment of the moment it started, so each pool hands
its workers the environment of the moment it was made (secrets, settings), and a worker adopts
it before building its context.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn

from siyu.engine.context import EngineContext, Partition
from siyu.engine.receipts import StepCounts
from siyu.engine.send_step import run_step
from siyu.language.spec import JourneySpec, Step
from siyu.settings import adopt
from siyu.settings import environment as process_environment

ContextFactory = Callable[[], EngineContext]

# In a worker process: the contexts it has built, by the token of the pool that asked. Built
# on first use rather than in a pool initializer, so that a failure (a missing secret, an
# unreachable database) reaches the flow as that error, not as a broken pool.
_contexts: dict[str, EngineContext] = {}


def _context(token: str, factory: ContextFactory, environment: Mapping[str, str]) -> EngineContext:
    ctx = _contexts.get(token)
    if ctx is None:
        adopt(environment)  # the pool's environment, not the forkserver's (see the docstring)
        ctx = _contexts[token] = factory()
        # What lives as long as the worker (modules, the context) leaves the collector's
        # sight: a full collection then walks only what batches allocate (it was ~6 % of a
        # send step's time, and 2 % with this).
        gc.freeze()
    return ctx


class PartitionWorkerError(RuntimeError):
    """An error raised in a worker process that cannot be rebuilt in the flow's process."""


def _reraise_portably(error: Exception) -> NoReturn:
    """Raise `error` again when it survives pickling, so that the flow sees it as itself;
    else a PartitionWorkerError that names it (the worker's traceback, with the original,
    still comes along). An error the flow's process cannot rebuild (an exception whose
    __init__ takes other arguments than its message) would otherwise break the whole pool,
    and the flow would see only BrokenProcessPool."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        kind = type(error)
        raise PartitionWorkerError(f"{kind.__module__}.{kind.__qualname__}: {error}") from error
    raise error


def _ready(
    token: str, factory: ContextFactory, environment: Mapping[str, str], everyone: Any
) -> int:
    try:
        _context(token, factory, environment)
    except Exception as error:
        _reraise_portably(error)
    everyone.wait(120)  # each warm-up call holds its process until all have one
    return os.getpid()


def _run_partition(
    token: str,
    factory: ContextFactory,
    environment: Mapping[str, str],
    spec: JourneySpec,
    step_id: str,
    now: datetime,
    journey_id: int | None,
    partition: Partition,
) -> StepCounts:
    step = next(s for s in spec.steps if s.id == step_id)
    try:
        ctx = _context(token, factory, environment)
        return run_step(ctx, spec, step, now, journey_id, partition)
    except Exception as error:
        _reraise_portably(error)


def _exit_with(owner: int) -> None:
    """Pool initializer: the worker ends when the process that owns the pool (the tick) is
    gone. A tick killed with SIGKILL cannot close its pool, and its workers were found idle
    13 minutes later, each holding its memory and database connections. Whatever a worker
    had claimed stays `sending` until its lease ends, then is sent once by a later tick."""

    def watch() -> None:
        while True:
            time.sleep(1)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(1)  # noqa: SLF001  # no cleanup to run: the owner is gone

    threading.Thread(target=watch, name="siyu-owner-watch", daemon=True).start()


def _forkserver(factory: ContextFactory) -> multiprocessing.context.ForkServerContext:
    """The forkserver context; its server, when not yet started, preloads this module and the
    factory's (e.g. tasks.context, which imports Prefect)."""
    context = multiprocessing.get_context("forkserver")
    module = getattr(getattr(factory, "func", factory), "__module__", None)
    factory_module = [module] if module and module != "__main__" else []
    context.set_forkserver_preload([__name__, *factory_module])
    return context


class PartitionWorkers:
    """A pool of `processes` worker processes for one flow run (or one benchmark)."""

    def __init__(self, factory: ContextFactory, processes: int) -> None:
        self.processes = processes
        self._factory = factory
        self._token = uuid.uuid4().hex
        self._environment = process_environment()
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=_forkserver(factory),
            initializer=_exit_with,
            initargs=(os.getpid(),),
        )

    def run_step(
        self,
        spec: JourneySpec,
        step: Step,
        now: datetime,
        journey_id: int | None,
        partition: Partition,
    ) -> StepCounts:
        """run_step() for one partition, in a worker process; returns its counts. An error
        in the worker is raised here, so the partition's task fails and Prefect retries it."""
        future = self._pool.submit(
            _run_partition,
            self._token,
            self._factory,
            self._environment,
            spec,
            step.id,
            now,
            journey_id,
            partition,
        )
        return future.result()

    def warm_up(self) -> set[int]:
        """Start every worker (interpreter, imports, context) now; returns their pids."""
        with _forkserver(self._factory).Manager() as manager:
            everyone = manager.Barrier(self.processes)
            futures = [
                self._pool.submit(_ready, self._token, self._factory, self._environment, everyone)
                for _ in range(self.processes)
            ]
            return {future.result() for future in futures}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PartitionWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
