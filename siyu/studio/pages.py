"""The studio's pages as HTML: every value escaped, no script, no request to anywhere but the
page's own server. Labels in Chinese first (the users are Chinese private-domain teams),
English with `?lang=en`."""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from siyu.graph.draw import to_svg
from siyu.graph.model import build_graph
from siyu.language.problems import Problem
from siyu.studio.overview import JourneyFile

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "旅程工作台",
        "journeys": "全部旅程",
        "file": "文件",
        "journey": "旅程",
        "status": "状态",
        "valid": "可上线",
        "problems": "个问题",
        "version": "版本",
        "schedule": "运行频率",
        "channels": "渠道",
        "channel": "渠道",
        "enrolled": "进入人数",
        "sent": "已发送",
        "goal": "达成目标",
        "last_tick": "最近运行",
        "no_data": "无数据",
        "step": "步骤",
        "due": "应发",
        "skipped": "跳过",
        "deferred": "延后",
        "failed": "失败",
        "source": "源文件",
        "picture": "旅程图",
        "figures": "各步骤数据",
        "back": "返回全部旅程",
        "other": "English",
        "customers": "查顾客",
        "find": "查找",
        "find_hint": "顾客 ID、外部 ID 或 138****5678",
        "customer": "顾客",
        "external_id": "外部 ID",
        "identities": "联系方式",
        "unknown": "没有找到顾客",
        "no_database": "没有数据库",
        "unreadable": "数据库无法读取",
        "candidates": "多位顾客符合, 请选择",
        "met_none": "尚未进入任何旅程",
        "backtest": "回测",
        "backtest_ask": "这个版本在过去几天会怎样?",
        "days": "天数",
        "run": "开始回测",
        "running": "回测中",
        "done": "回测完成",
        "failed_run": "回测失败",
        "this_version": "当前文件",
        "committed": "上次提交的版本",
        "same_as_committed": "与上次提交的版本相同 (或没有提交的版本): 只回测当前文件",
    },
    "en": {
        "title": "Journey studio",
        "journeys": "Journeys",
        "file": "file",
        "journey": "journey",
        "status": "status",
        "valid": "valid",
        "problems": "problem(s)",
        "version": "version",
        "schedule": "schedule",
        "channels": "channels",
        "channel": "channel",
        "enrolled": "enrolled",
        "sent": "sent",
        "goal": "goal reached",
        "last_tick": "last tick",
        "no_data": "no data",
        "step": "step",
        "due": "due",
        "skipped": "skipped",
        "deferred": "deferred",
        "failed": "failed",
        "source": "source",
        "picture": "picture",
        "figures": "per step",
        "back": "all journeys",
        "other": "中文",
        "customers": "find a customer",
        "find": "find",
        "find_hint": "customer id, external id or 138****5678",
        "customer": "customer",
        "external_id": "external id",
        "identities": "reached at",
        "unknown": "no customer found for",
        "no_database": "no database",
        "unreadable": "the database cannot be read",
        "candidates": "several customers match; choose one",
        "met_none": "has not entered any journey",
        "backtest": "backtest",
        "backtest_ask": "what would this version have done over the last N days?",
        "days": "days",
        "run": "run the backtest",
        "running": "backtest running",
        "done": "backtest done",
        "failed_run": "the backtest failed",
        "this_version": "the file now",
        "committed": "last committed version",
        "same_as_committed": "same as the last committed version (or none): only the file now",
    },
}

_CSS = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.n{text-align:right}.ok{color:#1d7a46}.bad{color:#b3261e}.muted{color:#777}
pre.source{background:#fafafa;border:1px solid #ddd;padding:.5rem;line-height:1.4}
.line{display:block}.line.problem{background:#fdecea}.no{color:#999;user-select:none}
.why{display:block;color:#b3261e;padding-left:3rem}
"""


def language(value: str | None) -> str:
    return "en" if value == "en" else "zh"


def _page(lang: str, title: str, body: str, switch: str) -> str:
    t = LABELS[lang]
    other = "zh" if lang == "en" else "en"
    return (
        f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head>'
        f'<meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head>'
        f'<body><p class="muted"><a href="{escape(switch)}?lang={other}">{t["other"]}</a></p>'
        f"{_customer_search(lang)}"
        f"{body}</body></html>\n"
    )


def _customer_search(lang: str) -> str:
    """The form on every page's header that looks a customer up (siyu.studio.story)."""
    t = LABELS[lang]
    return (
        f'<form method="get" action="/customers" id="find-customer">'
        f'<label>{t["customers"]} <input name="q" placeholder="{t["find_hint"]}" size="28"></label>'
        f'<input type="hidden" name="lang" value="{lang}"> <button>{t["find"]}</button></form>'
    )


def page(lang: str, title: str, body: str, switch: str) -> str:
    """A studio page around `body`, for the pages built in other modules."""
    return _page(lang, title, body, switch)


def index_page(files: list[JourneyFile], lang: str) -> str:
    t = LABELS[lang]
    head = "".join(
        f"<th>{t[k]}</th>"
        for k in (
            "journey", "file", "status", "version", "schedule", "channels",
            "enrolled", "sent", "goal", "last_tick",
        )
    )  # fmt: skip
    rows = [f"<tr>{head}</tr>"]
    for entry in files:
        spec = entry.spec
        name = spec.journey if spec else "—"
        link = f'<a href="/journeys/{escape(entry.key)}?lang={lang}">{escape(name)}</a>'
        status = (
            f'<span class="ok">{t["valid"]}</span>'
            if entry.valid
            else f'<span class="bad">{len(entry.problems)} {t["problems"]}</span>'
        )
        cells = [
            link,
            escape(entry.path.name),
            status,
            str(spec.version) if spec else "",
            escape(spec.schedule) if spec else "",
            escape(", ".join(sorted({step.send for step in spec.steps}))) if spec else "",
            *_figures(entry, lang),
        ]
        tds = "".join(
            f'<td class="n">{c}</td>' if i >= 6 else f"<td>{c}</td>" for i, c in enumerate(cells)
        )
        rows.append(f'<tr id="file-{escape(entry.key)}">{tds}</tr>')
    body = f'<h1>{t["journeys"]}</h1><table id="journeys">{"".join(rows)}</table>'
    return _page(lang, t["title"], body, "/")


def _figures(entry: JourneyFile, lang: str) -> list[str]:
    t = LABELS[lang]
    figures = entry.figures
    if figures is None or entry.spec is None:
        return [f'<span class="muted">{t["no_data"]}</span>', "", "", ""]
    sent = sum(step.statuses.get("sent", 0) for step in figures.steps)
    rate = f"{figures.goal_reached / figures.enrolled:.1%}" if figures.enrolled else "—"
    last = "—"
    if entry.last_tick is not None:
        local = entry.last_tick.astimezone(ZoneInfo(entry.spec.timezone))
        last = f"{local:%Y-%m-%d %H:%M} {escape(entry.spec.timezone)}"
    return [f"{figures.enrolled:,}", f"{sent:,}", rate, last]


def journey_page(entry: JourneyFile, source: str, lang: str, extra: str = "") -> str:
    """`extra`: more of the page (a form) before the file's source."""
    t = LABELS[lang]
    spec = entry.spec
    title = spec.journey if spec else entry.path.name
    parts = [
        f'<p><a href="/?lang={lang}">{t["back"]}</a></p>',
        f"<h1>{escape(title)}</h1>",
    ]
    if entry.valid:
        parts.append(f'<p class="ok" id="status">{t["valid"]}</p>')
    else:
        parts.append(
            f'<p class="bad" id="status">{len(entry.problems)} {t["problems"]}</p>'
            f'<ul id="problems">{"".join(_problem_item(p) for p in entry.problems)}</ul>'
        )
    if spec is not None:
        parts.append(
            f'<h2>{t["picture"]}</h2><figure id="picture">{to_svg(build_graph(spec))}</figure>'
        )
        parts.append(f"<h2>{t['figures']}</h2>{_step_table(entry, lang)}")
    parts.append(extra)
    parts.append(
        f"<h2>{t['source']}: {escape(entry.path.name)}</h2>{_source(source, entry.problems)}"
    )
    return _page(lang, title, "".join(parts), f"/journeys/{entry.key}")


def _problem_item(problem: Problem) -> str:
    where = f"{problem.line}:{problem.column}" if problem.line else ""
    return f"<li><code>{escape(where)}</code> {escape(problem.message)}</li>"


def _step_table(entry: JourneyFile, lang: str) -> str:
    t = LABELS[lang]
    assert entry.spec is not None
    head = "".join(
        f"<th>{t[k]}</th>" for k in ("step", "channel", "sent", "skipped", "deferred", "failed")
    )
    steps = {s.step_id: s for s in entry.figures.steps} if entry.figures else {}
    rows = [f"<tr>{head}</tr>"]
    for step in entry.spec.steps:
        counts = steps.get(step.id)
        numbers = (
            [counts.statuses.get(k, 0) for k in ("sent", "skipped", "deferred", "failed")]
            if counts
            else ["—"] * 4
        )
        cells = "".join(f'<td class="n">{n}</td>' for n in numbers)
        rows.append(f"<tr><td>{escape(step.id)}</td><td>{escape(step.send)}</td>{cells}</tr>")
    return f'<table id="steps">{"".join(rows)}</table>'


def _source(source: str, problems: list[Problem]) -> str:
    """The file's lines numbered, each line with a problem marked and its message under it."""
    by_line: dict[int, list[Problem]] = {}
    for problem in problems:
        by_line.setdefault(problem.line, []).append(problem)
    lines = []
    for number, text in enumerate(source.splitlines(), start=1):
        found = by_line.get(number, [])
        css = "line problem" if found else "line"
        why = "".join(
            f'<span class="why">{" " * max(p.column - 1, 0)}^ {escape(p.message)}</span>'
            for p in found
        )
        lines.append(
            f'<span class="{css}" id="L{number}"><span class="no">{number:>4} </span>'
            f"{escape(text)}</span>{why}"
        )
    return f'<pre class="source">{"".join(lines)}</pre>'
