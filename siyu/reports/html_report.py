"""`siyu report JOURNEY -o FILE.html`: one self-contained page (inline CSS and SVG, no
scripts, no network) with the journey's funnel, daily sends by channel, conversion over
time, the experiment results with their intervals and verdicts, and the messages held in
doubt for a person to decide, if any."""

from __future__ import annotations

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from siyu.engine.ledger import in_doubt
from siyu.language.spec import JourneySpec
from siyu.metrics.funnel import Funnel, build_funnel
from siyu.metrics.results import Experiment, experiment_results
from siyu.reports.svg_charts import bar_chart, interval_chart, line_chart

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .6rem;border:1px solid #ddd;
text-align:right}th:first-child,td:first-child{text-align:left}.warn{color:#a15c00}
.ok{color:#1d7a46}.muted{color:#777}figure{margin:1rem 0}
"""
# two reports next to each other (compare_sections), on this page or another
COMPARE_CSS = """
#compare{display:grid;grid-template-columns:1fr 1fr;gap:2rem}
.version{min-width:0;overflow-x:auto}.label{font-weight:bold;font-size:1.1rem}
"""
_SIDE_BY_SIDE_CSS = "body{max-width:none;margin:1rem}" + COMPARE_CSS


def render_report(session: Session, spec: JourneySpec, now: datetime) -> str:
    body = report_body(session, spec, f"generated {now.isoformat()}")
    return html_page(f"{spec.journey} report", f'<main id="report">{body}</main>')


def report_body(session: Session, spec: JourneySpec, subtitle: str, ids: str = "") -> str:
    """The report's sections for one journey's ledger; `ids` prefixes the element ids, so
    two reports can share a page."""
    funnel = build_funnel(session, spec)
    experiments = experiment_results(session, spec)
    sections = [
        f"<h1>{escape(spec.journey)}</h1>",
        f'<p class="muted">{escape(spec.description)} — {escape(subtitle)}</p>',
        _headline(funnel),
        "<h2>Funnel</h2>",
        _funnel_section(funnel, ids),
        "<h2>Daily sends by channel</h2>",
        _daily_sends(funnel, ids),
        "<h2>Conversion over time</h2>",
        _conversion(funnel),
        "<h2>Experiments</h2>",
        _experiments(experiments, ids),
        *_held_for_a_person(session, spec),
    ]
    return "".join(sections)


def side_by_side(title: str, columns: list[tuple[str, str]]) -> str:
    """Reports next to each other (a backtest's two versions): (heading, report_body)."""
    return html_page(title, compare_sections(columns), wide=True)


def compare_sections(columns: list[tuple[str, str]]) -> str:
    """The reports (heading, report_body) as columns of one element (COMPARE_CSS)."""
    cells = "".join(
        f'<section class="version" id="version-{n}"><p class="label">{escape(heading)}</p>'
        f"{body}</section>"
        for n, (heading, body) in enumerate(columns, start=1)
    )
    return f'<main id="compare">{cells}</main>'


def html_page(title: str, main: str, wide: bool = False) -> str:
    css = _CSS + (_SIDE_BY_SIDE_CSS if wide else "")
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{css}</style></head>"
        f"<body>{main}</body></html>\n"
    )


def _held_for_a_person(session: Session, spec: JourneySpec) -> list[str]:
    """Messages in doubt (an earlier attempt may have sent them; the channel can neither
    deduplicate nor be asked), per step: nothing sends them until a person decides."""
    held = in_doubt(session, spec.journey)
    if not held:
        return []
    zone = ZoneInfo(spec.timezone)
    steps: dict[tuple[str, str], list[datetime]] = {}
    for row in held:
        steps.setdefault((row.step_id, row.channel), []).append(row.updated_at)
    rows = "".join(
        f"<tr><td>{escape(step)}</td><td>{escape(channel)}</td><td>{len(since)}</td>"
        f"<td>{min(since).astimezone(zone):%Y-%m-%d %H:%M} {escape(spec.timezone)}</td></tr>"
        for (step, channel), since in sorted(steps.items())
    )
    return [
        '<h2 class="warn">Held for a person: messages in doubt</h2>',
        f'<p class="warn">{len(held)} message(s) may have reached the customer already: an '
        "attempt's answer was lost and the channel can neither deduplicate nor be asked. "
        "Nothing sends them again until a person decides: "
        f"<code>siyu resolve {escape(spec.journey)}</code> lists them, then "
        "<code>--sent</code> or <code>--send-again</code> per customer.</p>",
        "<table><tr><th>step</th><th>channel</th><th>held</th><th>oldest since</th></tr>"
        f"{rows}</table>",
    ]


def _headline(funnel: Funnel) -> str:
    treated = funnel.enrolled - funnel.holdout
    return (
        f"<p>{funnel.enrolled} enrolled ({funnel.holdout} in the holdout); "
        f"goal reached by {funnel.goal_treated} of {treated} treated and "
        f"{funnel.goal_holdout} of {funnel.holdout} held out.</p>"
    )


def _funnel_section(funnel: Funnel, ids: str = "") -> str:
    parts = []
    header = "<tr><th>step</th><th>variant</th>" + "".join(
        f"<th>{h}</th>"
        for h in ("due", "sent", "delivered", "failed", "skipped", "deferred", "clicked", "goal")
    )
    rows = [header + "</tr>"]
    for step in funnel.steps:
        parts.append(
            bar_chart(
                f"{step.step_id} ({step.channel})",
                [
                    ("due", step.total.due),
                    ("sent", step.total.sent),
                    ("delivered", step.total.delivered),
                    ("clicked", step.total.clicked),
                    ("goal after delivery", step.total.goal),
                ],
            )
        )
        stages = [("all", step.total), *sorted(step.variants.items())]
        for variant, stage in stages:
            cells = "".join(f"<td>{v}</td>" for v in stage.as_row().values())
            rows.append(
                f"<tr><td>{escape(step.step_id)}</td><td>{escape(variant)}</td>{cells}</tr>"
            )
        reasons = ", ".join(
            f"{escape(reason)} {n}" for reason, n in step.total.skipped.most_common()
        )
        if reasons:
            rows.append(f'<tr><td></td><td colspan="9" class="muted">skipped: {reasons}</td></tr>')
    figures = "".join(f"<figure>{chart}</figure>" for chart in parts)
    return f'<table id="{ids}funnel">{"".join(rows)}</table>{figures}'


def _daily_sends(funnel: Funnel, ids: str = "") -> str:
    channels = sorted({c for day in funnel.days for c in day.sent_by_channel})
    if not channels:
        return '<p class="muted">nothing sent yet</p>'
    labels = [day.day.strftime("%m-%d") for day in funnel.days]
    series = {c: [float(day.sent_by_channel[c]) for day in funnel.days] for c in channels}
    steps = [step.step_id for step in funnel.steps]
    head = "<tr><th>day</th>" + "".join(f"<th>{escape(s)}</th>" for s in steps) + "</tr>"
    rows = [
        f"<tr><td>{day.day.isoformat()}</td>"
        + "".join(f"<td>{day.sent_by_step[s]}</td>" for s in steps)
        + "</tr>"
        for day in funnel.days
        if day.sent_by_step
    ]
    return (
        f"<figure>{line_chart('messages sent per day', labels, series)}</figure>"
        f'<details><summary>sent per day and step</summary><table id="{ids}daily">{head}'
        f"{''.join(rows)}</table></details>"
    )


def _conversion(funnel: Funnel) -> str:
    """Cumulative goal conversion of the customers enrolled up to each day."""
    if not funnel.days:
        return '<p class="muted">no enrollments yet</p>'
    labels = [day.day.strftime("%m-%d") for day in funnel.days]
    series: dict[str, list[float]] = {"treated": [], "holdout": []}
    totals = {"treated": [0, 0], "holdout": [0, 0]}
    for day in funnel.days:
        totals["treated"][0] += day.enrolled_treated
        totals["treated"][1] += day.goal_treated
        totals["holdout"][0] += day.enrolled_holdout
        totals["holdout"][1] += day.goal_holdout
        for name, (n, won) in totals.items():
            series[name].append(won / n if n else 0.0)
    if not funnel.holdout:
        del series["holdout"]
    chart = line_chart("goal conversion, cumulative by entry day", labels, series, percent=True)
    return f"<figure>{chart}</figure>"


def _experiments(experiments: list[Experiment], ids: str = "") -> str:
    if not experiments:
        return '<p class="muted">no holdout or variants (or no goal) in this journey</p>'
    rows = [
        "<tr><th>comparison</th><th>control</th><th>treatment</th><th>difference</th>"
        "<th>95% CI</th><th>lift</th><th>p</th><th>verdict</th></tr>"
    ]
    for experiment in experiments:
        c = experiment.comparison
        lift = f"{c.lift:+.1%}" if c.lift is not None else "–"
        p = f"{c.p_value:.3g} ({c.test})" if c.p_value is not None else "–"
        css = "warn" if c.warning else "ok" if c.significant else "muted"
        rows.append(
            f"<tr><td>{escape(experiment.name)}</td>"
            f"<td>{c.control.conversions}/{c.control.n} ({c.control.rate:.1%})</td>"
            f"<td>{c.treatment.conversions}/{c.treatment.n} ({c.treatment.rate:.1%})</td>"
            f"<td>{c.difference:+.2%}</td><td>{c.ci_low:+.2%} … {c.ci_high:+.2%}</td>"
            f"<td>{lift}</td><td>{p}</td>"
            f'<td class="{css}">{escape(c.verdict())}</td></tr>'
        )
    chart = interval_chart(
        "difference in goal conversion (95% Newcombe interval)",
        [
            (e.name, e.comparison.difference, e.comparison.ci_low, e.comparison.ci_high)
            for e in experiments
            if e.comparison.test != "none" or e.comparison.control.n
        ],
    )
    return f'<table id="{ids}experiments">{"".join(rows)}</table><figure>{chart}</figure>'
