"""The customer's story page (siyu.studio.story) as HTML: every value escaped; the values
about a customer arrive masked."""

from __future__ import annotations

from html import escape

from siyu.studio.pages import LABELS, page
from siyu.studio.story import Lookup, Story


def story_page(found: Lookup, lang: str) -> str:
    t = LABELS[lang]
    parts = [f'<p><a href="/?lang={lang}">{t["back"]}</a></p>']
    if found.problem == "unknown":
        parts.append(f'<p class="bad" id="unknown">{t["unknown"]} “{escape(found.query)}”</p>')
    elif found.problem is not None:
        parts.append(f'<p class="bad" id="problem">{t[found.problem]}</p>')
    elif found.candidates:
        items = "".join(
            f'<li><a href="/customers?id={c.id}&amp;lang={lang}">{t["customer"]} {c.id}</a> '
            f"{escape(c.name)} {escape(', '.join(c.mobiles))}</li>"
            for c in found.candidates
        )
        parts.append(
            f"<h1>{escape(found.query)}</h1><p>{t['candidates']}</p>"
            f'<ul id="candidates">{items}</ul>'
        )
    elif found.story is not None:
        parts.append(_story(found.story, lang))
    # a story found by what was typed (an external id) is titled by the customer's id alone
    shown = str(found.story.id) if found.story else found.query
    return page(lang, f"{t['customer']} {shown}", "".join(parts), "/customers")


def _story(story: Story, lang: str) -> str:
    t = LABELS[lang]
    facts = [f"<tr><th>{t['customer']}</th><td>{story.id}</td></tr>"]
    if story.external_id:
        facts.append(f"<tr><th>{t['external_id']}</th><td>{escape(story.external_id)}</td></tr>")
    reached = ", ".join(f"{escape(kind)} {escape(value)}" for kind, value in story.identities)
    facts.append(f"<tr><th>{t['identities']}</th><td>{reached or '—'}</td></tr>")
    parts = [
        f"<h1>{t['customer']} {story.id}: {escape(story.name)}</h1>",
        f'<table id="customer">{"".join(facts)}</table>',
    ]
    if not story.journeys:
        parts.append(f'<p class="muted" id="no-journeys">{t["met_none"]}</p>')
    for journey in story.journeys:
        parts.append(
            f"<h2>{t['journey']}: {escape(journey.journey)}</h2>"
            f'<pre class="source timeline">{escape(chr(10).join(journey.lines))}</pre>'
        )
    return f'<section id="story">{"".join(parts)}</section>'
