"""A tick: one pass of a journey at time `now`. The phases, in order:

    enroll      new entrants become enrollments
    goals       goal events within the window are recorded
    exits       customers who did the exit event leave; their deferred messages are skipped
    <step id>   one phase per step: select due, check rules, render, send, record
    complete    enrollments with every step final are marked completed

A tick is a pure function of (database, now): rerunning it changes nothing already done.
`flows/journey_flow.py` runs each phase as a Prefect task named after it; `run_tick` runs the
same phases without Prefect, for tests and backtests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from siyu.language.spec import JourneySpec, Step
from tasks.context import EngineContext
from tasks.enrollment import (
    close_exits,
    complete_finished,
    enroll_entrants,
    ensure_journey,
    record_goals,
)
from tasks.send_step import run_step

PhaseResult = Counter[str]


@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # "enroll" | "goals" | "exits" | "step" | "complete"
    run: Callable[[EngineContext, JourneySpec, datetime], PhaseResult]
    step: Step | None = None


def _enroll(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    with ctx.sessions() as session, session.begin():
        journey = ensure_journey(session, spec, now)
        return Counter({"enrolled": enroll_entrants(session, spec, journey, now)})


def _goals(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    with ctx.sessions() as session, session.begin():
        return Counter({"goal_reached": record_goals(session, spec, now, ctx.goal_grace)})


def _exits(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    with ctx.sessions() as session, session.begin():
        return Counter({"exited": close_exits(session, spec, now)})


def _complete(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
    with ctx.sessions() as session, session.begin():
        return Counter({"completed": complete_finished(session, spec, now)})


def _step_runner(step: Step) -> Callable[[EngineContext, JourneySpec, datetime], PhaseResult]:
    def run(ctx: EngineContext, spec: JourneySpec, now: datetime) -> PhaseResult:
        return run_step(ctx, spec, step, now)

    return run


def tick_phases(spec: JourneySpec) -> list[Phase]:
    return [
        Phase("enroll", "enroll", _enroll),
        Phase("goals", "goals", _goals),
        Phase("exits", "exits", _exits),
        *(Phase(step.id, "step", _step_runner(step), step) for step in spec.steps),
        Phase("complete", "complete", _complete),
    ]


def run_tick(ctx: EngineContext, spec: JourneySpec, now: datetime) -> dict[str, PhaseResult]:
    """Run one tick without Prefect; returns each phase's counts."""
    if now.tzinfo is None:
        raise ValueError("`now` must be timezone-aware")
    return {phase.name: phase.run(ctx, spec, now) for phase in tick_phases(spec)}
