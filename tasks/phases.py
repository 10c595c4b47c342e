"""The Prefect tasks of a tick, one per phase kind (siyu/engine/tick.py), with their retries,
timeouts and tags. Each is named after its phase in the Prefect UI: `enroll`, `opt-outs`,
`goals`, `exits`, `breakers`, one task per step id (`join-group`, `day3-care`, ...; a step
split into partitions is one task run per partition, `day3-care[0/2]`), `older-versions`,
`complete`. A step's task works on batches of recipients, never one task run per recipient.

Their inputs are serialisable (tasks/context.py): settings, the journey's name and version,
`now`, a partition's index and count. Each task builds (once per process) its engine context
from them.

Tasks retry: the send ledger makes a retry or a rerun send nothing twice. Nothing is cached
(NO_CACHE): a task run again with the same inputs, e.g. a tick rerun at the same `now` after a
crash, must run again, since that is how the messages a crash left `sending` are sent; a cached
result would skip them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prefect import State, Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from siyu.engine.tick import Phase, PhaseResult, partitions_of, tick_phases
from siyu.errors import SiyuError
from siyu.language.spec import JourneySpec
from tasks.context import TickSettings, engine_context, journey_spec

# A phase that runs longer has hung (a lost connection, a stuck provider): Prefect fails the
# attempt and retries it; the ledger makes the retry send nothing twice. A step of 100,000
# messages takes about a minute on 2 cores (docs/scale.md), so these leave ample room.
STEP_TIMEOUT = 1800.0
PHASE_TIMEOUT = 600.0
STEP_RETRIES = [2.0, 5.0, 15.0]
PHASE_RETRIES = [2.0, 5.0]


def transient(_task: Any, _task_run: Any, state: State[Any]) -> bool:
    """Whether a failed phase is worth retrying: a lost connection or a provider's hiccup may
    pass, a user's error (a journey's SQL refused or cancelled, a journey or template that does
    not validate) fails the same way again, so it fails the run at once with its message."""
    error = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(error, SiyuError)


def _phase(spec: JourneySpec, name: str) -> Phase:
    return next(phase for phase in tick_phases(spec) if phase.name == name)


def _logged(name: str, result: PhaseResult) -> dict[str, int]:
    """The phase's counts as labels: the task's return value, shown in the Prefect UI."""
    labels = dict(result.labels())
    if labels:
        get_run_logger().info(
            "%s: %s", name, ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        )
    return labels


def _run(
    settings: TickSettings, journey: str, version: int, now: datetime, name: str
) -> dict[str, int]:
    spec = journey_spec(settings, journey, version)
    return _logged(name, _phase(spec, name).run(engine_context(settings), spec, now))


_PHASE_OPTIONS: dict[str, Any] = dict(
    cache_policy=NO_CACHE,
    retries=len(PHASE_RETRIES),
    retry_delay_seconds=PHASE_RETRIES,
    retry_condition_fn=transient,
    timeout_seconds=PHASE_TIMEOUT,
)


@task(name="enroll", task_run_name="enroll", **_PHASE_OPTIONS)
def enroll(settings: TickSettings, journey: str, version: int, now: datetime) -> dict[str, int]:
    return _run(settings, journey, version, now, "enroll")


@task(name="opt-outs", task_run_name="opt-outs", **_PHASE_OPTIONS)
def opt_outs(settings: TickSettings, journey: str, version: int, now: datetime) -> dict[str, int]:
    return _run(settings, journey, version, now, "opt-outs")


@task(name="goals", task_run_name="goals", **_PHASE_OPTIONS)
def goals(settings: TickSettings, journey: str, version: int, now: datetime) -> dict[str, int]:
    return _run(settings, journey, version, now, "goals")


@task(name="exits", task_run_name="exits", **_PHASE_OPTIONS)
def exits(settings: TickSettings, journey: str, version: int, now: datetime) -> dict[str, int]:
    return _run(settings, journey, version, now, "exits")


@task(name="breakers", task_run_name="breakers", **_PHASE_OPTIONS)
def breakers(settings: TickSettings, journey: str, version: int, now: datetime) -> dict[str, int]:
    return _run(settings, journey, version, now, "breakers")


@task(name="older-versions", task_run_name="older-versions", **_PHASE_OPTIONS)
def older_versions(
    settings: TickSettings, journey: str, version: int, now: datetime
) -> dict[str, int]:
    return _run(settings, journey, version, now, "older-versions")


@task(name="complete", task_run_name="complete", **_PHASE_OPTIONS)
def complete(settings: TickSettings, journey: str, version: int, now: datetime) -> dict[str, int]:
    return _run(settings, journey, version, now, "complete")


@task(
    cache_policy=NO_CACHE,
    retries=len(STEP_RETRIES),
    retry_delay_seconds=STEP_RETRIES,
    retry_condition_fn=transient,
)
def send_step(
    settings: TickSettings,
    journey: str,
    version: int,
    now: datetime,
    step_id: str,
    index: int = 0,
    count: int = 1,
) -> dict[str, int]:
    """One step's sends, or one partition of them (enrollment id modulo `count`)."""
    spec = journey_spec(settings, journey, version)
    parts = partitions_of(_phase(spec, step_id), count)
    phase = parts[index if len(parts) > 1 else 0]
    return _logged(phase.name, phase.run(engine_context(settings, index), spec, now))


def step_task(
    step_id: str, channel: str, count: int = 1, *, tagged: bool = True
) -> Task[..., dict[str, int]]:
    """The send task of one step, named after it, tagged with its channel (`channel:wecom`) so
    that a Prefect tag concurrency limit can hold a channel (unless `tagged` is False: see
    `channels_held_by_tag_limits`); a partition's run is named `day3-care[0/2]`."""
    return send_step.with_options(
        name=step_id,
        task_run_name=step_id if count <= 1 else f"{step_id}[{{index}}/{{count}}]",
        tags={f"channel:{channel}"} if tagged else set(),
    )


def timed(send: Task[..., dict[str, int]]) -> Task[..., dict[str, int]]:
    """`send` with STEP_TIMEOUT, for a task run on its process's main thread, where Prefect can
    interrupt it. In a worker thread (the flow's own pool, a Dask worker's executor) Prefect
    cannot: it only warned on every partition of every tick, and would have failed the task
    after it had finished. There the provider calls and the journey's SQL are bounded by
    their own timeouts."""
    return send.with_options(timeout_seconds=STEP_TIMEOUT)


def channels_held_by_tag_limits(channels: Iterable[str]) -> set[str]:
    """The channels an operator holds with a Prefect tag concurrency limit (`prefect
    concurrency-limit create channel:sms 2`): one API read per channel and tick. Only their
    send tasks are tagged, because in Prefect 3.8.8 a tagged task run asks the API for its
    tag's limit even when none exists, and two partitions of a step submitted together then
    waited about 2 s each (measured with the test API; untagged, 0.02 s)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    held: set[str] = set()
    with get_client(sync_client=True) as client:
        for channel in sorted(set(channels)):
            try:
                client.read_global_concurrency_limit_by_name(f"tag:channel:{channel}")
            except ObjectNotFound:
                continue
            held.add(channel)
    return held


PHASE_TASKS: dict[str, Task[..., dict[str, int]]] = {
    "enroll": enroll,
    "opt-outs": opt_outs,
    "goals": goals,
    "exits": exits,
    "breakers": breakers,
    "older": older_versions,
    "complete": complete,
}
