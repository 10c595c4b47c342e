"""The compiled journey: one Prefect flow run is one tick of one journey at time `now`.

Each phase of the tick (siyu/engine/tick.py) is one Prefect task named after it — `enroll`,
`goals`, `exits`, then one task per step id (`join-group`, `day3-care`, ...), then
`complete` — so the Prefect UI shows a run as the journey's own steps. A step's task works
on batches of recipients, never one task run per recipient.

Step tasks retry: the send ledger makes a retry or a rerun send nothing twice.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prefect import State, flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

import tasks  # noqa: F401  (plugs Prefect into the library: tasks/prefect_hooks.py)
from siyu.engine.context import EngineContext
from siyu.engine.partition_workers import PartitionWorkers
from siyu.engine.tick import Phase, PhaseResult, partitions_of, tick_phases
from siyu.errors import SiyuError
from siyu.language.check_project import content_problems
from siyu.language.problems import SpecError
from siyu.language.spec import JourneySpec
from siyu.project import Project, worker_context
from siyu.storage.engine import make_engine, make_sessionmaker

# A phase that runs longer has hung (a lost connection, a stuck provider): Prefect fails the
# attempt and retries it; the ledger makes the retry send nothing twice. A step of 100,000
# messages takes about a minute on 2 cores (docs/scale.md), so these leave ample room.
STEP_TIMEOUT = 1800.0
PHASE_TIMEOUT = 600.0


def transient(_task: Any, _task_run: Any, state: State[Any]) -> bool:
    """Whether a failed phase is worth retrying: a lost connection or a provider's hiccup may
    pass, a user's error (a journey's SQL refused or cancelled, a journey or template that does
    not validate) fails the same way again, so it fails the run at once with its message."""
    error = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(error, SiyuError)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient)
def run_phase(ctx: EngineContext, phase: Phase, spec: Any, now: datetime) -> dict[str, int]:
    result: PhaseResult = phase.run(ctx, spec, now)
    if result:
        get_run_logger().info(
            "%s: %s", phase.name, ", ".join(f"{k}={v}" for k, v in sorted(result.items()))
        )
    return dict(result)


def parse_now(now: str | None) -> datetime:
    if not now:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(now)
    if moment.tzinfo is None:
        raise ValueError(f"`now` {now!r} needs a time zone offset, e.g. 2026-11-23T09:00+08:00")
    return moment.astimezone(UTC)


def _run_name() -> str:
    """`first-purchase-care @ 2026-11-23T08:00:00+00:00`; a scheduled run (no `now`) is named
    after the moment it starts."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    now = parameters.get("now") or datetime.now(UTC).isoformat(timespec="seconds")
    return f"{parameters.get('journey')} @ {now}"


@flow(name="journey-tick", flow_run_name=_run_name, log_prints=True)
def journey_tick(
    journey: str,
    now: str | None = None,
    channel_base_url: str | None = None,
    partitions: int | None = None,
    processes: bool | None = None,
    throttle: bool = True,
) -> dict[str, dict[str, int]]:
    """Run one tick of `journey` at `now` (ISO 8601 with offset; default: the current time).

    The database comes from SIYU_DATABASE_URL, journeys/templates/channels.yaml from the
    project directory, and `channel_base_url` (or SIYU_CHANNEL_BASE_URL) points every channel
    at one gateway, e.g. the local sandbox. `partitions` (or SIYU_STEP_PARTITIONS) splits
    every step into that many parallel tasks; with `processes` (or
    SIYU_PARTITION_PROCESSES=1) each partition runs in its own worker process, so a large
    step uses every core (siyu/engine/partition_workers.py). `throttle=False` drops the channels'
    client-side rate limits: only for the local sandbox (refused for a non-loopback URL).
    """
    moment = parse_now(now)
    project = Project.find()
    spec = project.journey(journey)
    problems = content_problems(project, spec)
    if problems:  # e.g. a template edited after deploy now carries a banned claim
        raise SpecError(problems)
    engine = make_engine()
    count = partitions or int(os.environ.get("SIYU_STEP_PARTITIONS", "1"))
    contexts = [
        project.engine_context(
            make_sessionmaker(engine), project.build_channels(channel_base_url, throttle=throttle)
        )
        for _ in range(max(count, 1))
    ]
    if processes is None:
        processes = os.environ.get("SIYU_PARTITION_PROCESSES", "") in ("1", "true", "yes")
    workers = None
    if processes and count > 1:
        factory = partial(
            worker_context,
            str(project.root),
            str(engine.url.render_as_string(False)),
            channel_base_url,
        )
        workers = PartitionWorkers(factory, count)
        for ctx in contexts:
            ctx.workers = workers
    try:
        results = run_tick_tasks(contexts, spec, moment)
        summary = _tick_summary(contexts[0], spec, moment, results)
    finally:
        if workers is not None:
            workers.close()
        for ctx in contexts:
            for channel in ctx.channels.values():
                channel.close()
        engine.dispose()
    _publish_summary(journey, moment, results)
    _publish_graph(spec, summary)
    return results


def run_tick_tasks(
    contexts: list[EngineContext], spec: JourneySpec, moment: datetime
) -> dict[str, dict[str, int]]:
    """The tick's phases as Prefect tasks, inside the calling flow. With more than one
    context, each step's due enrollments are split into that many partitions, mapped over
    the flow's task runner (threads by default; prefect-dask spreads them over machines: see
    docs/scale.md). Each partition has its own context, so its own channel clients."""
    results: dict[str, dict[str, int]] = {}
    for phase in tick_phases(spec):
        retries = 3 if phase.kind == "step" else 2
        phase_task = run_phase.with_options(
            name=phase.name,
            task_run_name=phase.name,
            retries=retries,
            retry_delay_seconds=[2.0, 5.0, 15.0][:retries],
            timeout_seconds=STEP_TIMEOUT if phase.kind == "step" else PHASE_TIMEOUT,
        )
        parts = partitions_of(phase, len(contexts))
        if len(parts) == 1:
            results[phase.name] = phase_task(contexts[0], phase, spec, moment)
            continue
        mapped = phase_task.with_options(task_run_name="{phase.name}")
        futures = mapped.map(contexts, parts, unmapped(spec), unmapped(moment))
        total: Counter[str] = Counter()
        for counts in futures.result():
            total.update(counts)
        results[phase.name] = dict(total)
    return results


def _publish_summary(journey: str, now: datetime, results: dict[str, dict[str, int]]) -> None:
    rows = [
        {"phase": phase, "outcome": outcome, "count": count}
        for phase, counts in results.items()
        for outcome, count in sorted(counts.items())
    ]
    create_table_artifact(
        key=re.sub(r"[^a-z0-9-]", "-", f"{journey}-tick".lower()),
        table=rows or [{"phase": "-", "outcome": "nothing due", "count": 0}],
        description=f"{journey} tick at {now.isoformat()}: outcome counts per phase",
    )


def _tick_summary(
    ctx: EngineContext, spec: Any, now: datetime, results: dict[str, dict[str, int]]
) -> str:
    """This tick, the funnel so far and the experiments' verdicts (siyu.metrics)."""
    from siyu.metrics.tick_summary import tick_markdown

    with ctx.sessions() as session:
        return tick_markdown(session, spec, now, results)


def _publish_graph(spec: Any, summary: str = "") -> None:
    """The tick's summary and the journey's picture on every run (an SVG image: the Prefect
    UI does not render Mermaid)."""
    from siyu.graph.draw import to_markdown_image
    from siyu.graph.model import build_graph

    create_markdown_artifact(
        key=re.sub(r"[^a-z0-9-]", "-", f"{spec.journey}-graph".lower()),
        markdown=f"{summary}\n## The journey\n\n{to_markdown_image(build_graph(spec))}\n",
        description=f"{spec.journey}: entry, steps with waits and deadlines, exit and goal",
    )
