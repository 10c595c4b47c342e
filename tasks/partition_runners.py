"""Where a step's partitions run, chosen per deployment (`journey_tick(runner=...)` or
SIYU_PARTITION_RUNNER in the deployment's job_variables.env):

- `threads` (the default): the flow's own thread pool; every partition in the flow's process.
- `processes`: siyu's worker pool (siyu/engine/partition_workers.py). Each partition's task
  is a thread of the flow's process that hands its slice to a worker process forked from a
  forkserver: the fastest way to use every core of one machine (docs/scale.md has the figures).
- `process-pool`: Prefect's ProcessPoolTaskRunner. Each partition's task run runs in a
  spawned process, which imports Prefect and siyu anew for each flow run.
- `dask`: prefect-dask's DaskTaskRunner. Against a dask.distributed scheduler
  (SIYU_DASK_ADDRESS, `tcp://host:8786`) the partitions run on the cluster's workers, on as
  many machines as it has; without an address, on a temporary local cluster of one worker
  process per partition for the flow run.

Whichever runs it, a partition's task gets only serialisable inputs (tasks/context.py) and
builds its engine context once per process and flow run. Claiming (siyu/engine/claims.py)
makes every runner as safe as one thread: a row is sent by whoever claimed it, and a row whose
worker died is sent again after its lease, or looked up at the provider first when the provider
may already have it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from prefect import Task, get_run_logger
from prefect.futures import PrefectFuture
from prefect.settings import get_current_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner

from siyu.errors import ConfigError
from tasks.context import TickSettings, release
from tasks.phases import timed

# the runners that are the flow's own thread pool, as far as Prefect is concerned
IN_FLOW_THREADS = ("threads", "processes")


@contextmanager
def partition_runner(settings: TickSettings) -> Iterator[TaskRunner[Any] | None]:
    """The task runner of the flow run's partitions, started once for the whole tick (every
    step's partitions use it); None: the flow's own thread pool."""
    if settings.partitions <= 1 or settings.runner in IN_FLOW_THREADS:
        yield None
        return
    if not get_current_settings().api.url:
        # on Prefect's ephemeral API each worker process would start an API of its own (seconds
        # of CPU each, every flow run) and report its task runs there, where nobody looks
        raise ConfigError(
            f"runner {settings.runner!r} needs a Prefect server: set PREFECT_API_URL (on a "
            "Dask cluster's workers too), e.g. http://127.0.0.1:4200/api after `prefect "
            "server start`; runners 'threads' and 'processes' work without one"
        )
    if settings.runner == "process-pool":
        with ProcessPoolTaskRunner(max_workers=settings.partitions) as pool:
            yield pool
        return
    # imports dask.distributed: only when chosen
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.dask_address:
        cluster = DaskTaskRunner(address=settings.dask_address)
    else:
        cluster = DaskTaskRunner(
            cluster_kwargs={"n_workers": settings.partitions, "threads_per_worker": 1}
        )
    with cluster:
        try:
            yield cluster
        finally:
            _release_on_workers(cluster, settings)


def _release_on_workers(cluster: Any, settings: TickSettings) -> None:
    """The cluster's workers outlive the run: each closes what it built for it (its database
    connections, channel clients). A worker the run cannot reach now keeps them until it stops;
    the tick's own outcome stands."""
    try:
        cluster.client.run(release, settings)
    except Exception as error:  # a lost scheduler must not hide the tick's result or error
        get_run_logger().warning(
            "could not release the run's contexts on the Dask workers: %s", error
        )


def submit_partition(
    runner: TaskRunner[Any] | None, send: Task[..., dict[str, int]], parameters: dict[str, Any]
) -> PrefectFuture[dict[str, int]]:
    """One partition's task run, on `runner` or on the flow's own thread pool; timed only in
    a process pool's processes, on their main thread (tasks.phases.timed)."""
    if isinstance(runner, ProcessPoolTaskRunner):
        send = timed(send)
    # cast: Task.submit's and TaskRunner.submit's overloads leave the future's type open
    future = send.submit(**parameters) if runner is None else runner.submit(send, parameters)
    return cast(PrefectFuture[dict[str, int]], future)
