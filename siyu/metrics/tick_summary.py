"""The markdown a journey's runs publish as Prefect artifacts.

`tick_markdown`: what one tick did, from the tick's own counts: no query, so a tick costs what
was due, not what the ledger has accumulated (a whole-ledger funnel took 3.3 s of every idle
tick at 1M customers; `python -m bench.idle_tick`). `funnel_markdown`: the funnel so far and
the experiments' verdicts, which read the journey's whole ledger: published once a day by the
data timetable's `data-journeys` run, and by `siyu report` on demand."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from siyu.language.spec import JourneySpec
from siyu.metrics.funnel import build_funnel
from siyu.metrics.results import experiment_results


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
                "",
                f"The funnel so far: `siyu report {spec.journey}`, and the daily "
                f"`{spec.journey}-funnel` artifact of the data timetable.",
            ]
        )
        + "\n"
    )


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
