"""The compiled journey: one Prefect flow run is one tick of one journey at time `now`.

Each phase of the tick (siyu/engine/tick.py) is one Prefect task named after it (tasks/phases.py)
— `enroll`, `goals`, `exits`, then one task per step id (`join-group`, `day3-care`, ...), then
`complete` — so the Prefect UI shows a run as the journey's own steps. A step's task works
on batches of recipients, never one task run per recipient.

Step tasks retry: the send ledger makes a retry or a rerun send nothing twice.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from siyu.engine.tick import partitions_of, tick_phases
from siyu.language.check_project import content_problems
from siyu.language.problems import SpecError
from siyu.language.spec import JourneySpec
from siyu.metrics.tick_summary import tick_markdown
from siyu.project import Project
from siyu.settings import PartitionRunner
from siyu.settings import settings as siyu_settings
from siyu.storage.engine import database_url
from tasks.context import TickSettings, engine_context, journey_spec, tick_resources
from tasks.partition_runners import partition_runner, submit_partition
from tasks.phases import PHASE_TASKS, channels_held_by_tag_limits, step_task, timed


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
    parameters = flow_run.parameters
    now = parameters.get("now") or datetime.now(UTC).isoformat(timespec="seconds")
    return f"{parameters.get('journey')} @ {now}"


@flow(name="journey-tick", flow_run_name=_run_name, log_prints=True)
def journey_tick(
    journey: str,
    now: str | None = None,
    channel_base_url: str | None = None,
    partitions: int | None = None,
    runner: PartitionRunner | None = None,
    throttle: bool = True,
    channel_tags: bool | None = None,
) -> dict[str, dict[str, int]]:
    """Run one tick of `journey` at `now` (ISO 8601 with offset; default: the current time).

    The database comes from SIYU_DATABASE_URL, journeys/templates/channels.yaml from the
    project directory, and `channel_base_url` (or SIYU_CHANNEL_BASE_URL) points every channel
    at one gateway, e.g. the local sandbox. `partitions` (or SIYU_STEP_PARTITIONS) splits
    every step into that many parallel tasks, and `runner` (or SIYU_PARTITION_RUNNER) says
    where they run: `threads` (the default), `processes` (siyu's worker processes, so a large
    step uses every core), `process-pool` (Prefect's ProcessPoolTaskRunner) or `dask`
    (prefect-dask, on the cluster at SIYU_DASK_ADDRESS): tasks/partition_runners.py.
    `throttle=False` drops the channels' client-side rate limits: only for the local sandbox
    (refused for a non-loopback URL).
    A send task carries its channel's tag (`channel:sms`) when an operator holds that channel
    with a Prefect tag concurrency limit (the default, `channel_tags=None`: one API read per
    channel and tick); `channel_tags=True` tags every send task, `False` none (the demo, which
    has no limits to honour). Tagging is not free in Prefect 3.8.8: see
    tasks/phases.py:channels_held_by_tag_limits.
    """
    moment = parse_now(now)
    project = Project.find()
    count = max(partitions or siyu_settings().step_partitions, 1)
    settings = TickSettings(
        project_dir=str(project.root),
        database_url=database_url(),
        channel_base_url=channel_base_url or siyu_settings().channel_base_url,
        throttle=throttle,
        partitions=count,
        runner=runner or siyu_settings().partition_runner,
        dask_address=siyu_settings().dask_address,
        run_id=str(flow_run.get_id() or ""),
    )
    with tick_resources(settings):  # channel clients, workers, the engine: closed after
        spec = journey_spec(settings, journey)
        problems = content_problems(project, spec)
        if problems:  # e.g. a template edited after deploy now carries a banned claim
            raise SpecError(problems)
        for slot in range(count):  # the channels' settings are refused here, before any task
            engine_context(settings, slot)
        results = run_tick_tasks(settings, spec, moment, channel_tags=channel_tags)
    _publish_summary(journey, moment, results)
    _publish_graph(spec, tick_markdown(spec, moment, results))
    return results


def run_tick_tasks(
    settings: TickSettings,
    spec: JourneySpec,
    moment: datetime,
    *,
    channel_tags: bool | None = None,
) -> dict[str, dict[str, int]]:
    """The tick's phases as Prefect tasks (tasks/phases.py), inside the calling flow. With
    more than one partition, each step's due enrollments are split into that many tasks,
    run by the settings' runner (tasks/partition_runners.py; their inputs are serialisable).
    Each partition has its own context, so its own channel clients."""
    results: dict[str, dict[str, int]] = {}
    inputs = (settings, spec.journey, spec.version, moment)
    phases = tick_phases(spec)
    channels = {phase.step.send for phase in phases if phase.step is not None}
    if channel_tags is None:
        tagged = channels_held_by_tag_limits(channels)
    else:
        tagged = channels if channel_tags else set()
    with partition_runner(settings) as runner:
        for phase in phases:
            if phase.step is None:
                results[phase.name] = PHASE_TASKS[phase.kind](*inputs)
                continue
            count = len(partitions_of(phase, settings.partitions))
            step = phase.step
            send = step_task(step.id, step.send, count, tagged=step.send in tagged)
            if count == 1:  # on the flow's main thread: its timeout can interrupt it
                results[phase.name] = timed(send)(*inputs, step.id)
                continue
            futures = [
                submit_partition(runner, send, _partition_inputs(inputs, step.id, index, count))
                for index in range(count)
            ]
            total: Counter[str] = Counter()
            for future in futures:
                total.update(future.result())
            results[phase.name] = dict(total)
    return results


def _partition_inputs(
    inputs: tuple[TickSettings, str, int, datetime], step_id: str, index: int, count: int
) -> dict[str, Any]:
    """send_step's parameters for one partition (tasks/phases.py)."""
    settings, journey, version, now = inputs
    return dict(
        settings=settings,
        journey=journey,
        version=version,
        now=now,
        step_id=step_id,
        index=index,
        count=count,
    )


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


def _publish_graph(spec: Any, summary: str = "") -> None:
    """The tick's counts and the journey's picture on every run (an SVG image: the Prefect
    UI does not render Mermaid)."""
    from siyu.graph.draw import to_markdown_image
    from siyu.graph.model import build_graph

    create_markdown_artifact(
        key=re.sub(r"[^a-z0-9-]", "-", f"{spec.journey}-graph".lower()),
        markdown=f"{summary}\n## The journey\n\n{to_markdown_image(build_graph(spec))}\n",
        description=f"{spec.journey}: entry, steps with waits and deadlines, exit and goal",
    )
