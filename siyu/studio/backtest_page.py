"""The backtest's form on a journey's page, and its page (siyu.studio.backtest): a progress
bar that reloads itself each second while it runs (a meta refresh, no script), then each
version's report side by side."""

from __future__ import annotations

from html import escape

from siyu.reports.html_report import COMPARE_CSS, compare_sections
from siyu.studio.backtest import Backtest
from siyu.studio.pages import LABELS, page
from siyu.studio.wording import studio_words

DEFAULT_DAYS = 30
MAX_DAYS = 366


def backtest_form(key: str, lang: str) -> str:
    """The form; studio.js puts the editor's text in its `text` field as it is sent (without
    the script the field stays empty and the file on disk is replayed)."""
    t = LABELS[lang]
    return (
        f"<h2>{t['backtest']}</h2>"
        f'<form method="post" action="/journeys/{escape(key)}/backtest?lang={lang}" '
        f'id="backtest"><label>{t["backtest_ask"]} {t["days"]} '
        f'<input type="number" name="days" value="{DEFAULT_DAYS}" min="1" max="{MAX_DAYS}">'
        f'</label><input type="hidden" name="text" id="backtest-text"> '
        f'<button id="run-backtest">{t["run"]}</button></form>'
    )


def backtest_page(run: Backtest, lang: str) -> str:
    t = LABELS[lang]
    parts = [
        f'<p><a href="/journeys/{escape(run.key)}?lang={lang}">{t["back"]}: '
        f"{escape(run.key)}</a></p>"
    ]
    if run.state == "running":
        parts += [
            '<meta http-equiv="refresh" content="1">',
            f'<h1 id="state">{t["running"]}: {escape(run.key)}, {run.days} {t["days"]}</h1>',
            f'<progress id="progress" max="{run.total or 1}" value="{run.done}"></progress> '
            f'<span id="ticks">{run.done} / {run.total or "?"} h</span> '
            f"{t[run.running] if run.running else ''} {escape(run.day)}",
        ]
    elif run.state == "failed":
        parts += [
            f'<h1 id="state">{t["failed_run"]}: {escape(run.key)}</h1>',
            f'<p class="bad" id="error">{escape(studio_words(run.error or "", lang))}</p>',
        ]
    else:
        parts.append(f'<h1 id="state">{t["done"]}: {escape(run.key)}, {run.days} {t["days"]}</h1>')
    notes = "".join(
        f"<li>{escape(t.get(note) or studio_words(note, lang))}</li>" for note in run.notes
    )
    if notes:
        parts.append(f'<ul class="muted" id="notes">{notes}</ul>')
    if run.state == "done":
        columns = [
            (f"{'AB'[n]}: {t[v.which]} (v{v.spec.version})", v.bodies.get(lang, ""))
            for n, v in enumerate(run.versions)
        ]
        parts.append(f"<style>{COMPARE_CSS}</style>{compare_sections(columns)}")
    return page(lang, f"{t['backtest']} {run.key}", "".join(parts), f"/backtests/{run.id}")
