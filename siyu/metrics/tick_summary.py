"""The markdown summary a journey's flow run publishes as a Prefect artifact on every tick:
what this tick did, the funnel so far, the experiment verdicts, and the journey's picture."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from siyu.language.spec import JourneySpec
from siyu.metrics.funnel import build_funnel
from siyu.metrics.results import experiment_results


def tick_markdown(
    session: Session, spec: JourneySpec, now: datetime, results: dict[str, dict[str, int]]
) -> str:
    funnel = build_funnel(session, spec, by_day=False)
    did = [
        f"- **{phase}**: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        for phase, counts in results.items()
        if counts
    ]
    lines = [
        f"# {spec.journey} at {now.isoformat(timespec='minutes')}",
        "",
        "## This tick",
        *(did or ["nothing was due"]),
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
