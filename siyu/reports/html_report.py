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
from siyu.metrics.experiments import Comparison
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

# The report's fixed words: English for `siyu report` and `siyu simulate --html` (their
# readers and tests parse these headers), Chinese for the studio's Chinese pages.
_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "funnel": "Funnel",
        "daily": "Daily sends by channel",
        "conversion": "Conversion over time",
        "experiments": "Experiments",
        "headline": "{enrolled} enrolled ({holdout} in the holdout); goal reached by "
        "{goal_treated} of {treated} treated and {goal_holdout} of {holdout} held out.",
        "step": "step",
        "variant": "variant",
        "due": "due",
        "sent": "sent",
        "delivered": "delivered",
        "failed": "failed",
        "skipped": "skipped",
        "deferred": "deferred",
        "clicked": "clicked",
        "goal": "goal",
        "goal after delivery": "goal after delivery",
        "all": "all",
        "skipped:": "skipped:",
        "nothing sent": "nothing sent yet",
        "day": "day",
        "sent per day": "messages sent per day",
        "sent per day and step": "sent per day and step",
        "no enrollments": "no enrollments yet",
        "treated": "treated",
        "holdout": "holdout",
        "conversion chart": "goal conversion, cumulative by entry day",
        "no experiments": "no holdout or variants (or no goal) in this journey",
        "comparison": "comparison",
        "control": "control",
        "treatment": "treatment",
        "difference": "difference",
        "ci": "95% CI",
        "lift": "lift",
        "verdict": "verdict",
        "interval chart": "difference in goal conversion (95% Newcombe interval)",
        "too small": "too small to conclude: {warning}",
        "better": "{treatment} converts better than {control}",
        "worse": "{treatment} converts worse than {control}",
        "no difference": "no significant difference",
        "held heading": "Held for a person: messages in doubt",
        "held text": "{count} message(s) may have reached the customer already: an "
        "attempt's answer was lost and the channel can neither deduplicate nor be asked. "
        "Nothing sends them again until a person decides: "
        "<code>siyu resolve {journey}</code> lists them, then "
        "<code>--sent</code> or <code>--send-again</code> per customer.",
        "channel": "channel",
        "held": "held",
        "oldest since": "oldest since",
    },
    "zh": {
        "funnel": "漏斗",
        "daily": "各渠道每日发送",
        "conversion": "转化趋势",
        "experiments": "实验",
        "headline": "进入旅程 {enrolled} 人（对照组 {holdout} 人）；实验组 {treated} 人中 "
        "{goal_treated} 人达成目标，对照组 {holdout} 人中 {goal_holdout} 人达成目标。",
        "step": "步骤",
        "variant": "变体",
        "due": "应发",
        "sent": "已发送",
        "delivered": "已送达",
        "failed": "失败",
        "skipped": "跳过",
        "deferred": "延后",
        "clicked": "点击",
        "goal": "达成目标",
        "goal after delivery": "送达后达成目标",
        "all": "全部",
        "skipped:": "跳过原因：",
        "nothing sent": "尚未发送任何消息",
        "day": "日期",
        "sent per day": "每日发送量",
        "sent per day and step": "按日期和步骤的发送量",
        "no enrollments": "尚无人进入旅程",
        "treated": "实验组",
        "holdout": "对照组",
        "conversion chart": "目标转化率（按进入日期累计）",
        "no experiments": "此旅程没有对照组或变体（或没有设定目标）",
        "comparison": "对比",
        "control": "对照",
        "treatment": "实验",
        "difference": "差值",
        "ci": "95% 置信区间",
        "lift": "提升",
        "verdict": "结论",
        "interval chart": "目标转化率差值（95% Newcombe 区间）",
        "too small": "样本太小，无法下结论：{warning}",
        "better": "{treatment} 的转化优于 {control}",
        "worse": "{treatment} 的转化不如 {control}",
        "no difference": "无显著差异",
        "held heading": "待人工处理：状态不明的消息",
        "held text": "{count} 条消息可能已经送达顾客：某次发送的回执丢失，"
        "且该渠道既不能去重也无法查询。"
        "在有人决定之前不会再次发送：<code>siyu resolve {journey}</code> 列出这些消息，"
        "然后对每位顾客选择 <code>--sent</code> 或 <code>--send-again</code>。",
        "channel": "渠道",
        "held": "暂缓条数",
        "oldest since": "最早开始于",
    },
}


def _words(lang: str) -> dict[str, str]:
    return _WORDS.get(lang, _WORDS["en"])


def render_report(session: Session, spec: JourneySpec, now: datetime) -> str:
    body = report_body(session, spec, f"generated {now.isoformat()}")
    return html_page(f"{spec.journey} report", f'<main id="report">{body}</main>')


def report_body(
    session: Session, spec: JourneySpec, subtitle: str, ids: str = "", lang: str = "en"
) -> str:
    """The report's sections for one journey's ledger; `ids` prefixes the element ids, so
    two reports can share a page; `lang` ("en" or "zh") is the language of its words."""
    funnel = build_funnel(session, spec)
    experiments = experiment_results(session, spec)
    w = _words(lang)
    sections = [
        f"<h1>{escape(spec.journey)}</h1>",
        f'<p class="muted">{escape(spec.description)} — {escape(subtitle)}</p>',
        _headline(funnel, w),
        f"<h2>{w['funnel']}</h2>",
        _funnel_section(funnel, ids, w),
        f"<h2>{w['daily']}</h2>",
        _daily_sends(funnel, ids, w),
        f"<h2>{w['conversion']}</h2>",
        _conversion(funnel, w),
        f"<h2>{w['experiments']}</h2>",
        _experiments(experiments, ids, w),
        *_held_for_a_person(session, spec, w),
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


def _held_for_a_person(session: Session, spec: JourneySpec, w: dict[str, str]) -> list[str]:
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
    text = w["held text"].format(count=len(held), journey=escape(spec.journey))
    head = "".join(f"<th>{w[k]}</th>" for k in ("step", "channel", "held", "oldest since"))
    return [
        f'<h2 class="warn">{w["held heading"]}</h2>',
        f'<p class="warn">{text}</p>',
        f"<table><tr>{head}</tr>{rows}</table>",
    ]


def _headline(funnel: Funnel, w: dict[str, str]) -> str:
    line = w["headline"].format(
        enrolled=funnel.enrolled,
        holdout=funnel.holdout,
        treated=funnel.enrolled - funnel.holdout,
        goal_treated=funnel.goal_treated,
        goal_holdout=funnel.goal_holdout,
    )
    return f"<p>{line}</p>"


def _funnel_section(funnel: Funnel, ids: str, w: dict[str, str]) -> str:
    parts = []
    header = f"<tr><th>{w['step']}</th><th>{w['variant']}</th>" + "".join(
        f"<th>{w[h]}</th>"
        for h in ("due", "sent", "delivered", "failed", "skipped", "deferred", "clicked", "goal")
    )
    rows = [header + "</tr>"]
    for step in funnel.steps:
        parts.append(
            bar_chart(
                f"{step.step_id} ({step.channel})",
                [
                    (w["due"], step.total.due),
                    (w["sent"], step.total.sent),
                    (w["delivered"], step.total.delivered),
                    (w["clicked"], step.total.clicked),
                    (w["goal after delivery"], step.total.goal),
                ],
            )
        )
        stages = [(w["all"], step.total), *sorted(step.variants.items())]
        for variant, stage in stages:
            cells = "".join(f"<td>{v}</td>" for v in stage.as_row().values())
            rows.append(
                f"<tr><td>{escape(step.step_id)}</td><td>{escape(variant)}</td>{cells}</tr>"
            )
        reasons = ", ".join(
            f"{escape(reason)} {n}" for reason, n in step.total.skipped.most_common()
        )
        if reasons:
            rows.append(
                f'<tr><td></td><td colspan="9" class="muted">{w["skipped:"]} {reasons}</td></tr>'
            )
    figures = "".join(f"<figure>{chart}</figure>" for chart in parts)
    return f'<table id="{ids}funnel">{"".join(rows)}</table>{figures}'


def _daily_sends(funnel: Funnel, ids: str, w: dict[str, str]) -> str:
    channels = sorted({c for day in funnel.days for c in day.sent_by_channel})
    if not channels:
        return f'<p class="muted">{w["nothing sent"]}</p>'
    labels = [day.day.strftime("%m-%d") for day in funnel.days]
    series = {c: [float(day.sent_by_channel[c]) for day in funnel.days] for c in channels}
    steps = [step.step_id for step in funnel.steps]
    head = f"<tr><th>{w['day']}</th>" + "".join(f"<th>{escape(s)}</th>" for s in steps) + "</tr>"
    rows = [
        f"<tr><td>{day.day.isoformat()}</td>"
        + "".join(f"<td>{day.sent_by_step[s]}</td>" for s in steps)
        + "</tr>"
        for day in funnel.days
        if day.sent_by_step
    ]
    return (
        f"<figure>{line_chart(w['sent per day'], labels, series)}</figure>"
        f'<details><summary>{w["sent per day and step"]}</summary><table id="{ids}daily">{head}'
        f"{''.join(rows)}</table></details>"
    )


def _conversion(funnel: Funnel, w: dict[str, str]) -> str:
    """Cumulative goal conversion of the customers enrolled up to each day."""
    if not funnel.days:
        return f'<p class="muted">{w["no enrollments"]}</p>'
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
    named = {w[name]: values for name, values in series.items()}
    chart = line_chart(w["conversion chart"], labels, named, percent=True)
    return f"<figure>{chart}</figure>"


def _experiments(experiments: list[Experiment], ids: str, w: dict[str, str]) -> str:
    if not experiments:
        return f'<p class="muted">{w["no experiments"]}</p>'
    keys = ("comparison", "control", "treatment", "difference", "ci", "lift", "p", "verdict")
    rows = ["<tr>" + "".join(f"<th>{w.get(k, k)}</th>" for k in keys) + "</tr>"]
    for experiment in experiments:
        c = experiment.comparison
        lift = f"{c.lift:+.1%}" if c.lift is not None else "–"
        p = f"{c.p_value:.3g} ({c.test})" if c.p_value is not None else "–"
        css = "warn" if c.warning else "ok" if c.significant else "muted"
        rows.append(
            f"<tr><td>{escape(_experiment_name(experiment.name, w))}</td>"
            f"<td>{c.control.conversions}/{c.control.n} ({c.control.rate:.1%})</td>"
            f"<td>{c.treatment.conversions}/{c.treatment.n} ({c.treatment.rate:.1%})</td>"
            f"<td>{c.difference:+.2%}</td><td>{c.ci_low:+.2%} … {c.ci_high:+.2%}</td>"
            f"<td>{lift}</td><td>{p}</td>"
            f'<td class="{css}">{escape(_verdict(c, w))}</td></tr>'
        )
    chart = interval_chart(
        w["interval chart"],
        [
            (
                _experiment_name(e.name, w),
                e.comparison.difference,
                e.comparison.ci_low,
                e.comparison.ci_high,
            )
            for e in experiments
            if e.comparison.test != "none" or e.comparison.control.n
        ],
    )
    return f'<table id="{ids}experiments">{"".join(rows)}</table><figure>{chart}</figure>'


def _verdict(c: Comparison, w: dict[str, str]) -> str:
    """Comparison.verdict in the report's language (a warning's own words as they are)."""
    if c.warning:
        return w["too small"].format(warning=c.warning)
    if c.significant:
        better = "better" if c.difference > 0 else "worse"
        return w[better].format(
            treatment=w.get(c.treatment.name, c.treatment.name),
            control=w.get(c.control.name, c.control.name),
        )
    return w["no difference"]


def _experiment_name(name: str, w: dict[str, str]) -> str:
    """The treated-against-holdout experiment's name in the report's language; a variant's
    names are the journey's own."""
    return f"{w['treated']} vs {w['holdout']}" if name == "treated vs holdout" else name
