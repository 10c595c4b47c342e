"""The markdown a journey's runs publish as Prefect artifacts.

`tick_markdown`: what one tick did, from the tick's own counts: no query, so a tick costs what
was due, not what the ledger has accumulated (a whole-ledger funnel took 3.3 s of every idle
tick at 1M customers; `python -m bench.idle_tick`). `funnel_markdown`: the funnel so far and
the experiments' verdicts, which read the journey's whole ledger: published once a day by the
data timetable's `data-journeys` run, and by `siyu report` on demand."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from siyu.language.spec import JourneySpec
from siyu.metrics.funnel import build_funnel
from siyu.metrics.results import experiment_results

# The labels of a tick's results that this summary reads (written by siyu/engine/tick.py's
# `complete` phase and the send step's claims).
IN_FLIGHT = "in_flight"  # messages still `sending` under a live lease after the tick
IN_FLIGHT_MINUTES = "in_flight_minutes_left"  # until the last of those leases ends
TAKEN_OVER_LABEL = "taken_over_after_lease"  # an earlier tick's in-flight messages settled now


def tick_markdown(spec: JourneySpec, now: datetime, results: dict[str, dict[str, int]]) -> str:
    did = [
        f"- **{phase}**: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        for phase, counts in results.items()
        if counts
    ]
    return (
        "\n".join(
            [
                f"# {spec.journey} at {now.isoformat(timespec='minutes')}",
                "",
                "## This tick",
                *(did or ["nothing was due"]),
                *_in_flight_lines(spec, now, results),
                "",
                f"The funnel so far: `siyu report {spec.journey}`, and the daily "
                f"`{spec.journey}-funnel` artifact of the data timetable.",
            ]
        )
        + "\n"
    )


def _in_flight_lines(
    spec: JourneySpec, now: datetime, results: dict[str, dict[str, int]]
) -> list[str]:
    """Messages this tick left in flight (an attempt claimed them and did not finish: its
    process or its connection died), and those an earlier tick left that this one settled."""
    lines: list[str] = []
    left = sum(counts.get(IN_FLIGHT, 0) for counts in results.values())
    if left:
        minutes = max(counts.get(IN_FLIGHT_MINUTES, 0) for counts in results.values())
        until = (now + timedelta(minutes=minutes)).astimezone(ZoneInfo(spec.timezone))
        lines += [
            "",
            f"**Warning: {left} message(s) still in flight.** An attempt claimed them and did "
            f"not finish. Nobody sends them until their lease ends at "
            f"{until.isoformat(timespec='minutes')}; a tick after that sends each once, under "
            "the same idempotency key (one an earlier attempt may have sent is looked up at "
            "the provider first).",
        ]
    settled = sum(counts.get(TAKEN_OVER_LABEL, 0) for counts in results.values())
    if settled:
        lines += [
            "",
            f"{settled} message(s) an earlier tick left in flight were taken over by this one "
            "after their lease ended (their outcomes are in the counts above).",
        ]
    return lines


def funnel_markdown(session: Session, spec: JourneySpec, now: datetime) -> str:
    funnel = build_funnel(session, spec, by_day=False)
    lines = [
        f"# {spec.journey}: the funnel at {now.isoformat(timespec='minutes')}",
        "",
        "## Funnel so far",
        f"{funnel.enrolled} enrolled ({funnel.holdout} held out), "
        f"goal reached by {funnel.goal_reached}.",
        "",
        "| step | channel | due | sent | delivered | failed | skipped | deferred | clicked "
        "| goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in funnel.steps:
        row = step.total.as_row()
        cells = " | ".join(str(v) for v in row.values())
        lines.append(f"| {step.step_id} | {step.channel} | {cells} |")
    experiments = experiment_results(session, spec)
    if experiments:
        lines += ["", "## Experiments"]
        for experiment in experiments:
            c = experiment.comparison
            p = f", p = {c.p_value:.3g}" if c.p_value is not None else ""
            lines.append(
                f"- {experiment.name}: {c.difference:+.2%} "
                f"(95% CI {c.ci_low:+.2%} … {c.ci_high:+.2%}{p}) — {c.verdict()}"
            )
    return "\n".join(lines) + "\n"
