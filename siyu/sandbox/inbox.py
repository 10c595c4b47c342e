"""``GET /_sandbox/inbox``: a small HTML inbox a marketer can open to see what the journeys
sent. (Not ``/``: that is Aliyun's RPC endpoint, which answers API errors, never the inbox.)

Messages grouped by channel, newest first, duplicates highlighted. Every piece of content is
HTML-escaped (message bodies come from templates and customer data)."""

from __future__ import annotations

import datetime as dt
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from siyu.sandbox.state import SHANGHAI, Message, SandboxState

INBOX_PATH = "/_sandbox/inbox"
JOIN_PATH = "/_sandbox/join/{config_id}"  # the join ways' qr_code URLs (wecom_api.py)

_CSS = """
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} td,th{padding:6px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top;font-size:13px} tr.dup{background:#ffe3e3}
.badge{display:inline-block;padding:1px 6px;border-radius:8px;font-size:11px;background:#eee}
.sent{background:#d9f5dd}.pending{background:#fff3c4}.refused,.failed{background:#f5d9d9}
pre{white-space:pre-wrap;margin:0;font-family:inherit}
"""


def routes(state: SandboxState) -> list[Route]:
    async def inbox(_: Request) -> Response:
        with state.lock:
            messages = list(state.messages)
        by_channel: dict[str, list[str]] = {}
        for m in sorted(messages, key=lambda m: m.id, reverse=True):
            dup = m.duplicate  # a second (third...) delivery of the same key
            when = dt.datetime.fromtimestamp(m.created_at, SHANGHAI).strftime("%m-%d %H:%M:%S")
            by_channel.setdefault(m.channel, []).append(
                f'<tr class="{"dup" if dup else ""}"><td>{m.id}</td><td>{escape(when)}</td>'
                f"<td>{escape(m.customer)}</td><td><pre>{escape(m.content)}</pre>{_links(m)}</td>"
                f'<td><span class="badge {escape(m.status)}">{escape(m.status)}</span>'
                f"{' <b>duplicate</b>' if dup else ''}</td><td>{escape(m.key[:40])}</td></tr>"
            )
        sections = "".join(
            f"<h2>{escape(ch)} ({len(rows)})</h2><table><tr><th>#</th><th>time</th>"
            f"<th>customer</th><th>message</th><th>status</th><th>key</th></tr>"
            f"{''.join(rows)}</table>"
            for ch, rows in sorted(by_channel.items())
        )
        page = (
            f"<!doctype html><html lang=zh><head><meta charset=utf-8>"
            f"<meta http-equiv=refresh content=5><title>siyu sandbox inbox</title>"
            f"<style>{_CSS}</style></head><body><h1>siyu sandbox inbox</h1>"
            f"<p>{len(messages)} messages. Rows in red are duplicates: "
            "a message whose key was already delivered.</p>"
            f"{sections or '<p>Nothing sent yet.</p>'}</body></html>"
        )
        return HTMLResponse(page)

    async def join(request: Request) -> Response:
        """What a customer sees after opening a join-group link: the group they join."""
        with state.lock:
            way = state.join_ways.get(request.path_params["config_id"])
        if way is None:
            return HTMLResponse(_page("unknown join link", "<p>No such join way.</p>"), 404)
        chats = ", ".join(escape(str(c)) for c in way.get("chat_id_list") or [])
        body = (
            f"<p>Joined the customer group <b>{chats}</b> (join way "
            f"{escape(str(way.get('config_id')))}, state {escape(str(way.get('state', '')))}).</p>"
            f'<p><a href="{INBOX_PATH}">inbox</a></p>'
        )
        return HTMLResponse(_page("siyu sandbox: join group", body))

    return [
        Route(INBOX_PATH, inbox, methods=["GET"]),
        Route(JOIN_PATH, join, methods=["GET"]),
    ]


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=zh><head><meta charset=utf-8><title>{escape(title)}"
        f"</title><style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _links(message: Message) -> str:
    """A WeCom message's link attachments (the join-group link), as links."""
    links = []
    for attachment in message.meta.get("attachments") or []:
        link = attachment.get("link") if isinstance(attachment, dict) else None
        if not isinstance(link, dict):
            continue
        url = str(link.get("url") or "")
        if url.startswith(("http://", "https://")):
            title = str(link.get("title") or url)
            links.append(f'<a href="{escape(url)}">{escape(title)}</a>')
    return f"<div>{' '.join(links)}</div>" if links else ""
