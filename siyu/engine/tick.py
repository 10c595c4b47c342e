"""A tick: one pass of a journey at time `now`. The phases, in order:

    enroll          new entrants become enrollments (holdout assigned here)
    opt-outs        SMS replies of T/TD/退订 become suppressions before anything is sent
    goals           goal events within the window are recorded
    exits           customers who did the exit event leave; their deferred messages are skipped
    breakers        each channel's circuit breaker opens, probes or closes (siyu.alerts)
    <step id>       one phase per step of the file's version: select due, rules, render, send
    older-versions  the steps of older versions for customers kept on them (`migrate: keep`)
    complete        enrollments with every step final are marked completed

A tick is a pure function of (database, now): rerunning it changes nothing already done.
`flows/journey_flow.py` runs each phase as a Prefect task named after it; `run_tick` runs the
same phases without Prefect, for tests and backtests.

A phase's result is typed (PhaseResult): named counts of the bookkeeping phases, the typed
outcomes (siyu.engine.receipts.Outcome) of the messages a step phase handled. It reads as
labelled counts (`enrolled`, `sent`, `skipped:holdout`, `v1:day3:sent`) where it is shown;
no code reads a label back.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, select

from siyu.alerts.breaker import breakers_phase
from siyu.engine.completion import complete_finished, messages_in_flight, warn_in_flight
from siyu.engine.context import WHOLE, EngineContext, Partition
from siyu.engine.entry import enroll_entrants
from siyu.engine.exits import close_exits
from siyu.engine.goals import record_goals
from siyu.engine.marketer_sql import journeys_dir_of
from siyu.engine.optouts import apply_sms_replies
from siyu.engine.receipts import StepCounts, outcome_labels
from siyu.engine.send_step import run_step
from siyu.engine.versions import kept_versions
from siyu.language.spec import JourneySpec, Step
from siyu.metrics.tick_summary import IN_FLIGHT, IN_FLIGHT_MINUTES
from siyu.storage.engine import write_session
from siyu.storage.models import Journey
from siyu.storage.statistics import refresh_stale_statistics
from siyu.storage.types import as_utc


@dataclass(frozen=True, eq=False)  # compared as the Mapping of its labels
class PhaseResult(Mapping[str, int]):
    """What one phase of a tick did. `counts`: the named counts of a bookkeeping phase
    (`enrolled`, `opted_out`, `goal_reached`, `exited`, `open:sms`, `completed`). `outcomes`:
    a step phase's typed outcomes. `older`: per (version, step id), the outcomes of the older
    versions' steps. As a Mapping it is the labelled counts, for showing only."""

    counts: Counter[str] = field(default_factory=Counter)
    outcomes: StepCounts = field(default_factory=Counter)
    older: dict[tuple[int, str], StepCounts] = field(default_factory=dict)

    def sends(self) -> Iterator[StepCounts]:
        """The typed outcomes of every step this phase ran, of any version."""
        yield self.outcomes
        yield from self.older.values()

    def labels(self) -> Counter[str]:
        labels = Counter(self.counts)
        labels.update(outcome_labels(self.outcomes))
        for (version, step), outcomes in self.older.items():
            for label, n in outcome_labels(outcomes).items():
                labels[f"v{version}:{step}:{label}"] += n
        return labels

    def __getitem__(self, label: str) -> int:
        return self.labels()[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self.labels())

    def __len__(self) -> int:
        return len(self.labels())


PhaseRun = Callable[[EngineContext, JourneySpec, datetime], PhaseResult]


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # "enroll" | "opt-outs" | "goals" | "exits" | "breakers" | "step" | "older" | ...
    run: PhaseRun
    step: Step | None = None


def _enroll(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    # Statistics a bulk load left stale are refreshed before any plan is made from them.
    refresh_stale_statistics(ctx.sessions.kw["bind"])
    # enrollment runs the journey's own SQL read-only, outside its write transactions
    journeys = journeys_dir_of(ctx.templates_dir)
    return PhaseResult(
        Counter({"enrolled": enroll_entrants(ctx.sessions, spec, now, ctx.late_events, journeys)})
    )


def _opt_outs(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    with write_session(ctx.sessions) as session:
        opted_out = apply_sms_replies(session, ctx.policies.opt_out_words, now)
    return PhaseResult(Counter({"opted_out": opted_out}))


def _goals(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    journeys = journeys_dir_of(ctx.templates_dir)
    reached = record_goals(ctx.sessions, spec, now, ctx.goal_grace, journeys, ctx.late_events)
    return PhaseResult(Counter({"goal_reached": reached}))


def _exits(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    journeys = journeys_dir_of(ctx.templates_dir)
    exited = close_exits(ctx.sessions, spec, now, ctx.late_events, journeys)
    return PhaseResult(Counter({"exited": exited}))


def _breakers(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    """Channel circuit breakers (siyu.alerts.breaker): open, probe or close before sending."""
    return PhaseResult(breakers_phase(ctx, [step.send for step in spec.steps], now))


_VERSION_ID = select(Journey.id).where(
    Journey.name == bindparam("name"), Journey.version == bindparam("version")
)


def _current_version_id(ctx: EngineContext, spec: JourneySpec) -> int:
    with ctx.sessions() as session:  # asked by every step phase: the statement is built once
        journey_id = session.scalar(_VERSION_ID, {"name": spec.journey, "version": spec.version})
    if journey_id is None:  # the enroll phase creates it; a step cannot run before
        raise RuntimeError(f"journey {spec.journey} v{spec.version} has no row; run enroll first")
    return journey_id


def _step_runner(step: Step, partition: Partition = WHOLE) -> PhaseRun:
    def run(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
        journey_id = _current_version_id(ctx, spec)
        return PhaseResult(outcomes=run_step(ctx, spec, step, now, journey_id, partition))

    return run


def partitions_of(phase: Phase, count: int) -> list[Phase]:
    """A step phase as `count` phases over disjoint slices of its enrollments, to run in
    parallel; any other phase (or count 1) stays whole."""
    if phase.step is None or count <= 1:
        return [phase]
    return [
        Phase(
            f"{phase.name}[{i}/{count}]",
            phase.kind,
            _step_runner(phase.step, Partition(i, count)),
            phase.step,
        )
        for i in range(count)
    ]


def _complete(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    # The steps may have just filled a ledger that was empty when it was last analysed.
    refresh_stale_statistics(ctx.sessions.kw["bind"])
    with write_session(ctx.sessions) as session:
        counts = Counter({"completed": complete_finished(session, spec, now)})
    with ctx.sessions() as session:
        in_flight, until = messages_in_flight(session, spec.journey, now)
    warn_in_flight(spec.journey, in_flight, until)
    if in_flight:  # shown only when there are some: an ordinary tick leaves none
        counts[IN_FLIGHT] = in_flight
        if until is not None:  # whole minutes: a tick's results are counts
            minutes = math.ceil((as_utc(until) - now).total_seconds() / 60)
            counts[IN_FLIGHT_MINUTES] = max(minutes, 1)
    return PhaseResult(counts)


def _older_versions(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    older: dict[tuple[int, str], StepCounts] = {}
    with ctx.sessions() as session:
        versions = kept_versions(session, spec)
    for journey_id, old_spec in versions:
        for step in old_spec.steps:
            outcomes = run_step(ctx, old_spec, step, now, journey_id)
            older.setdefault((old_spec.version, step.id), Counter()).update(outcomes)
    return PhaseResult(older=older)


def tick_phases(spec: JourneySpec) -> list[Phase]:
    return [
        Phase("enroll", "enroll", _enroll),
        Phase("opt-outs", "opt-outs", _opt_outs),
        Phase("goals", "goals", _goals),
        Phase("exits", "exits", _exits),
        Phase("breakers", "breakers", _breakers),
        *(Phase(step.id, "step", _step_runner(step), step) for step in spec.steps),
        Phase("older-versions", "older", _older_versions),
        Phase("complete", "complete", _complete),
    ]


# Whether to run a phase, given the results of the phases before it in the same tick.
PhaseFilter = Callable[[Phase, Mapping[str, PhaseResult]], bool]


def run_tick(
    ctx: EngineContext, spec: JourneySpec, now: datetime, wanted: PhaseFilter | None = None
) -> dict[str, PhaseResult]:
    """Run one tick without Prefect; returns each phase's result. `wanted`: run only the
    phases it accepts; a backtest leaves out those it knows have nothing to do at `now`
    (siyu.simulate.moments), and their results are missing."""
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    results: dict[str, PhaseResult] = {}
    for phase in tick_phases(spec):
        if wanted is None or wanted(phase, results):
            results[phase.name] = phase.run(ctx, spec, now)
    return results


def run_ticks_by_priority(
    ctx: EngineContext, specs: Iterable[JourneySpec], now: datetime
) -> dict[str, dict[str, PhaseResult]]:
    """Tick several journeys at the same moment, the highest `priority` first, so that when
    they compete for a customer's capped contacts the more important journey wins."""
    ordered = sorted(specs, key=lambda spec: (-spec.priority, spec.journey))
    return {spec.journey: run_tick(ctx, spec, now) for spec in ordered}
