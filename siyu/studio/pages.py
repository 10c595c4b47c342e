"""The studio's pages as HTML: every value escaped, no inline script (a journey's page loads
the studio's own studio.js), no request to anywhere but the page's own server. Labels in
Chinese first (the users are Chinese private-domain teams), English with `?lang=en`."""

from __future__ import annotations

from dataclasses import replace
from html import escape
from zoneinfo import ZoneInfo

from siyu.graph.draw import to_svg
from siyu.graph.model import build_graph
from siyu.language.problems import Problem
from siyu.studio.checking import Checked
from siyu.studio.editing import Saved, text_hash
from siyu.studio.journey_view import JourneyView
from siyu.studio.overview import JourneyFile
from siyu.studio.previews import MessagePreview, Previews
from siyu.studio.wording import studio_words

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
        "find_customer": "查顾客",
        "find": "查找",
        "find_hint": "顾客 ID、外部 ID 或 138****5678",
        "external_id": "外部 ID",
        "identities": "联系方式",
        "unknown": "没有找到顾客",
        "no_database": "没有数据库",
        "unreadable": "数据库无法读取",
        "candidates": "多位顾客符合, 请选择",
        "met_none": "尚未进入任何旅程",
        "backtest": "回测",
        "backtest_ask": "编辑器中的这个版本在过去几天会怎样?",
        "days": "天数",
        "run": "开始回测",
        "running": "回测中",
        "done": "回测完成",
        "failed_run": "回测失败",
        "edited": "编辑器中的版本 (未保存)",
        "this_version": "当前文件",
        "committed": "上次提交的版本",
        "same_as_committed": "与上次提交的版本相同 (或没有提交的版本): 只回测当前文件",
        "editor": "编辑",
        "save": "保存",
        "saving": "保存中…",
        "checking": "检查中…",
        "check": "检查结果",
        "not_saved": "此文件不能在工作台中保存",
        "previews": "消息预览",
        "variant": "变体",
        "customer": "顾客",
        "message": "消息",
        "checks": "检查",
        "chars": "字",
        "limit": "上限",
        "sms_parts": "计费条数",
        "signature": "签名",
        "opt_out": "退订",
        "not_needed": "通知无需",
        "unknown_channel": "未知渠道",
        "render_error": "渲染失败",
        "no-database": "没有数据库：以示例顾客预览（示例数据）",
        "no-customers": "数据库里还没有顾客：以示例顾客预览（示例数据）",
        "customers": "数据库中的顾客（个人信息已打码）",
        "unchecked": "旅程还有问题：以示例顾客预览（未通过检查的 SQL 不在数据库上运行）",
        "diff": "与最近一次提交的差异",
        "same": "与最近一次提交相同",
        "fix_first": "先修正上面的问题，才能画图和预览",
        "saved": "已保存 {name}",
        "invalid": "未保存：{count} 个问题，文件未改动",
        "changed": "{name} 在你打开之后已在磁盘上被改过（changed on disk since you opened it）："
        "请先复制你的修改，重新加载页面后再改",
        "refused": "未保存：{refusal}",
        "no_such_file": "没有这个旅程文件",
        "no_such_backtest": "没有这次回测",
        "form_too_large": "表单太大",
        "days_range": "天数：1 到 {max} 之间的整数",
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
        "find_customer": "find a customer",
        "find": "find",
        "find_hint": "customer id, external id or 138****5678",
        "external_id": "external id",
        "identities": "reached at",
        "unknown": "no customer found for",
        "no_database": "no database",
        "unreadable": "the database cannot be read",
        "candidates": "several customers match; choose one",
        "met_none": "has not entered any journey",
        "backtest": "backtest",
        "backtest_ask": "what would the editor's version have done over the last N days?",
        "days": "days",
        "run": "run the backtest",
        "running": "backtest running",
        "done": "backtest done",
        "failed_run": "the backtest failed",
        "edited": "the editor's text (not saved)",
        "this_version": "the file now",
        "committed": "last committed version",
        "same_as_committed": "same as the last committed version (or none): only the file now",
        "editor": "edit",
        "save": "Save",
        "saving": "saving…",
        "checking": "checking…",
        "check": "check",
        "not_saved": "the studio does not save this file",
        "previews": "message previews",
        "variant": "variant",
        "customer": "customer",
        "message": "message",
        "checks": "checks",
        "chars": "characters",
        "limit": "limit",
        "sms_parts": "billed SMS",
        "signature": "signature",
        "opt_out": "opt-out",
        "not_needed": "not needed (notification)",
        "unknown_channel": "unknown channel",
        "render_error": "render error",
        "no-database": "no database: previewed for the sample customer (sample data)",
        "no-customers": "no customers in the database yet: previewed for the sample customer "
        "(sample data)",
        "customers": "customers of the database (personal data masked)",
        "unchecked": "the journey has problems: previewed for the sample customer (SQL that "
        "has not passed the check never runs on the database)",
        "diff": "difference from the last commit",
        "same": "the same as the last commit",
        "fix_first": "fix the problems above to see the picture and the previews",
        "saved": "saved {name}",
        "invalid": "not saved: {count} problem(s); the file is unchanged",
        "changed": "{name} changed on disk since you opened it: copy your edit, reload the page "
        "and apply it again",
        "refused": "not saved: {refusal}",
        "no_such_file": "no such journey file",
        "no_such_backtest": "no such backtest",
        "form_too_large": "the form is too large",
        "days_range": "days: a whole number from 1 to {max}",
    },
}

_CSS = """
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.n{text-align:right}.ok{color:#1d7a46}.bad{color:#b3261e}.muted{color:#777}
pre.source{background:#fafafa;border:1px solid #ddd;padding:.5rem;line-height:1.4}
.line{display:block}.line.problem{background:#fdecea}.no{color:#999;user-select:none}
.why{display:block;color:#b3261e;padding-left:3rem}
.edit{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}
#editor{width:100%;height:36rem;font:13px/1.4 ui-monospace,"Noto Sans Mono CJK SC",monospace;
box-sizing:border-box;tab-size:2}
pre.source{max-height:32rem;overflow:auto;font-size:13px}
#problems li{cursor:pointer}.stale{opacity:.45}
pre.message{white-space:pre-wrap;margin:0;max-width:28rem}
ul.checks{margin:0;padding-left:1rem}
pre.diff{background:#fafafa;border:1px solid #ddd;padding:.5rem}
.add{color:#1d7a46}.del{color:#b3261e}.hunk{color:#777}
"""
# The page's only script: a file of the studio's own (no inline script; CSP script-src 'self').
_SCRIPT = '<script src="/static/studio.js" defer></script>'


def language(value: str | None) -> str:
    return "en" if value == "en" else "zh"


def _page(lang: str, title: str, body: str, switch: str, head: str = "", data: str = "") -> str:
    t = LABELS[lang]
    other = "zh" if lang == "en" else "en"
    return (
        f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head>'
        f'<meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style>{head}</head>'
        f'<body{data}><p class="muted"><a href="{escape(switch)}?lang={other}">{t["other"]}</a></p>'
        f"{_customer_search(lang)}"
        f"{body}</body></html>\n"
    )


def _customer_search(lang: str) -> str:
    """The form on every page's header that looks a customer up (siyu.studio.story)."""
    t = LABELS[lang]
    return (
        f'<form method="get" action="/customers" id="find-customer">'
        f'<label>{t["find_customer"]} <input name="q" placeholder="{t["find_hint"]}" size="28">'
        f'</label><input type="hidden" name="lang" value="{lang}"> <button>{t["find"]}</button>'
        "</form>"
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


def journey_page(view: JourneyView, lang: str, token: str, backtest: str = "") -> str:
    """A journey's page: the editor beside the check of its text, the picture, the figures,
    the previews, the difference from the last commit, and `backtest` (its form). studio.js
    swaps the parts that journey_parts renders as the marketer types."""
    t = LABELS[lang]
    entry = view.entry
    spec = entry.spec
    title = spec.journey if spec else entry.path.name
    parts = first_parts(journey_parts(view, lang), lang)
    readonly = view.not_saved is not None
    saving = (
        f'<p class="bad" id="save-result">{t["not_saved"]}: '
        f"{escape(studio_words(view.not_saved or '', lang))}</p>"
        if readonly
        else f'<p><button type="button" id="save">{t["save"]}</button> '
        f'<span id="save-result" role="status"></span></p>'
    )
    # The parser drops a newline right after <textarea>: one is added so the text's own stays.
    editor = (
        f'<textarea id="editor" spellcheck="false" wrap="off" data-loaded="{text_hash(view.text)}"'
        f"{' readonly' if readonly else ''}>\n{escape(view.text)}</textarea>"
    )
    body = "".join(
        [
            f'<p><a href="/?lang={lang}">{t["back"]}</a></p>',
            f"<h1>{escape(title)}</h1>",
            parts["status"],
            '<div class="edit"><section>',
            f"<h2>{t['editor']}: {escape(entry.path.name)}</h2>{editor}{saving}</section>",
            f'<section><h2>{t["check"]} <span id="checking" class="muted"></span></h2>',
            f"{parts['problems']}{parts['source']}</section></div>",
            f"<h2>{t['picture']}</h2>{parts['picture']}",
            f"<h2>{t['figures']}</h2>{parts['steps']}",
            f"<h2>{t['previews']}</h2>{parts['previews']}",
            f"<h2>{t['diff']}</h2>{parts['diff']}",
            backtest,
        ]
    )
    head = f'<meta name="siyu-token" content="{escape(token)}">' + _SCRIPT
    data = f' data-key="{escape(entry.key)}" data-lang="{lang}"'
    data += f' data-saving="{t["saving"]}" data-checking="{t["checking"]}"'
    return _page(lang, title, body, f"/journeys/{entry.key}", head, data)


def journey_parts(view: JourneyView, lang: str) -> dict[str, str | None]:
    """The parts of a journey's page that follow its text, each one element with its id.
    None: the text does not parse into a journey, and the page keeps the last one shown."""
    t = LABELS[lang]
    entry, checked = view.entry, view.checked
    if checked.valid:
        status = f'<p class="ok" id="status">{t["valid"]}</p>'
    else:
        status = f'<p class="bad" id="status">{len(checked.problems)} {t["problems"]}</p>'
    own = [p for p in checked.problems if checked.in_file(p)]
    items = "".join(_problem_item(p, checked) for p in checked.problems)
    parts: dict[str, str | None] = {
        "status": status,
        "problems": f'<ul id="problems">{items}</ul>',
        "source": _source(view.text, own),
        "picture": None,
        "steps": None,
        "previews": None,
        "diff": _diff(view.diff, lang),
    }
    if entry.spec is not None:
        parts["picture"] = f'<figure id="picture">{_picture(entry, lang)}</figure>'
        parts["steps"] = _step_table(entry, lang)
    if view.previews is not None:
        parts["previews"] = _previews(view.previews, lang)
    return parts


def save_message(saved: Saved, name: str, lang: str) -> str:
    """What became of a save, in the page's language (plain text: the script shows it as
    text)."""
    count = len(saved.checked.problems) if saved.checked else 0
    refusal = studio_words(saved.refusal, lang)
    return LABELS[lang][saved.outcome].format(name=name, count=count, refusal=refusal)


def first_parts(parts: dict[str, str | None], lang: str) -> dict[str, str]:
    """journey_parts for a page shown for the first time: what is missing says why."""
    missing = f'<p class="muted">{LABELS[lang]["fix_first"]}</p>'
    return {
        key: value
        if value is not None
        else missing.replace('<p class="muted">', f'<p class="muted" id="{key}">')
        for key, value in parts.items()
    }


def _problem_item(problem: Problem, checked: Checked) -> str:
    if checked.in_file(problem):
        where = f"{problem.line}:{problem.column}" if problem.line else ""
        data = f' data-line="{problem.line}"' if problem.line else ""
    else:  # a template's problem: at a line of the template
        where = problem.location()
        data = ""
    return f"<li{data}><code>{escape(where)}</code> {escape(problem.message)}</li>"


def _picture(entry: JourneyFile, lang: str) -> str:
    """The journey's graph, each step's box carrying its figures from the ledger."""
    assert entry.spec is not None
    t = LABELS[lang]
    graph = build_graph(entry.spec)
    if entry.figures is not None:
        counts = {s.step_id: s.statuses for s in entry.figures.steps}
        for index, node in enumerate(graph.nodes):
            statuses = counts.get(node.title) if node.kind == "step" else None
            if statuses is None:
                continue
            line = " · ".join(
                f"{t[k]} {statuses.get(k, 0):,}" for k in ("sent", "skipped", "deferred", "failed")
            )
            graph.nodes[index] = replace(node, lines=(*node.lines, line))
    return to_svg(graph)


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


def _previews(previews: Previews, lang: str) -> str:
    t = LABELS[lang]
    head = "".join(
        f"<th>{t[k]}</th>" for k in ("step", "variant", "channel", "customer", "message", "checks")
    )
    rows = [f"<tr>{head}</tr>"]
    for shown in previews.messages:
        preview = shown.preview
        channel = escape(shown.step.send)
        channel += (
            f' <span class="muted">({escape(shown.kind)})</span>'
            if shown.kind
            else f' <span class="bad">{t["unknown_channel"]}</span>'
        )
        message = (
            f'<pre class="message">{escape(preview.body)}</pre>'
            if preview.body is not None
            else f'<span class="bad">{t["render_error"]}: {escape(preview.error or "")}</span>'
        )
        cells = [
            escape(shown.step.id),
            escape(shown.variant or "—"),
            channel,
            escape(preview.who),
            message,
            _checks(shown, lang),
        ]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        rows.append(
            f'<tr data-step="{escape(shown.step.id)}" data-variant="{escape(shown.variant or "")}">'
            f"{tds}</tr>"
        )
    note = f'<p class="muted">{t[previews.source]}</p>'
    return f'<div id="previews">{note}<table class="previews">{"".join(rows)}</table></div>'


def _checks(shown: MessagePreview, lang: str) -> str:
    t = LABELS[lang]
    if shown.preview.body is None:
        return ""
    length = f"{shown.preview.length:,} {t['chars']} / {t['limit']} {shown.limit.chars:,}"
    items = [f'<li class="{"bad" if shown.too_long else "ok"}">{length}</li>']
    if shown.too_long:
        items.append(f'<li class="bad">{escape(shown.too_long)}</li>')
    if shown.sms:
        items.append(f'<li class="sms-parts">{t["sms_parts"]} {shown.sms_parts}</li>')
        codes = {p.code for p in shown.checks}
        signature = "sms-signature" not in codes
        items.append(
            f'<li class="{"ok" if signature else "bad"}">{t["signature"]} '
            f"{'✓' if signature else '✗'}</li>"
        )
        if shown.step.purpose != "marketing":
            items.append(f'<li class="muted">{t["opt_out"]}: {t["not_needed"]}</li>')
        else:
            opt_out = "sms-opt-out" not in codes
            items.append(
                f'<li class="{"ok" if opt_out else "bad"}">{t["opt_out"]} '
                f"{'✓' if opt_out else '✗'}</li>"
            )
        items += [f'<li class="bad">{escape(p.message)}</li>' for p in shown.checks]
    return f'<ul class="checks">{"".join(items)}</ul>'


def _diff(diff: tuple[list[str] | None, str], lang: str) -> str:
    lines, note = diff[0], studio_words(diff[1], lang)
    if lines is None:
        return f'<div id="diff"><p class="muted">{escape(note)}</p></div>'
    if not lines:
        return f'<div id="diff"><p class="muted">{LABELS[lang]["same"]} ({escape(note)})</p></div>'
    css = {"+": "add", "-": "del", "@": "hunk"}
    shown = "".join(
        f'<span class="{css.get(line[:1], "")}">{escape(line)}</span>\n' for line in lines
    )
    note = f'<p class="muted">{escape(note)}</p>'
    return f'<div id="diff">{note}<pre class="diff">{shown}</pre></div>'


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
    return f'<pre class="source" id="source">{"".join(lines)}</pre>'
