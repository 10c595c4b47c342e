"""Tracked links end to end: a template's `| tracked` link, the sandbox's redirect endpoint
logging the click, and `clicks sync` turning it into one `link_clicked` event."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.render import render_message
from siyu.metrics.clicks import fetch_clicks, record_clicks
from siyu.metrics.links import read_link_token
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Event
from tests.conftest import Shop


def test_a_clicked_link_redirects_and_becomes_one_event(
    tmp_path: Path,
    sessions: sessionmaker[Session],
    shop: Shop,
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIYU_LINK_SECRET", "s" * 32)
    monkeypatch.setenv("SIYU_LINK_BASE_URL", sandbox.url)
    customer = shop.customer()
    (tmp_path / "t.j2").write_text('看看新品 {{ "https://shop.example/p/1" | tracked }}')
    rendered = render_message(
        tmp_path,
        "t.j2",
        {"customer": {"id": customer}, "journey": "j", "step": "s1", "variant": "b"},
    )
    assert rendered.body is not None
    link = rendered.body.split()[-1]
    assert link.startswith(f"{sandbox.url}/r/")
    token = link.rsplit("/", 1)[1]
    assert read_link_token(token).customer_id == customer

    with httpx.Client(trust_env=False) as client:
        answer = client.get(link)
        forged = client.get(link[:-3] + "AAA")  # same target, signature altered
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://shop.example/p/1"
    assert forged.status_code == 404  # verified before redirecting: no click, no redirect

    for _ in range(2):  # a second sync adds nothing
        with sessions() as session, session.begin():
            result = record_clicks(session, fetch_clicks(sandbox.url))
    assert (result.fetched, result.inserted, result.already, result.forged) == (1, 0, 1, 0)
    with sessions() as session:
        events = session.execute(
            select(Event.customer_id, Event.properties).where(Event.name == "link_clicked")
        ).all()
    assert events == [
        (
            customer,
            {"journey": "j", "step": "s1", "variant": "b", "url": "https://shop.example/p/1"},
        )
    ]


def test_without_a_signing_key_links_stay_untracked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIYU_LINK_SECRET", raising=False)
    monkeypatch.delenv("SIYU_UNSUBSCRIBE_SECRET", raising=False)
    (tmp_path / "t.j2").write_text('{{ "https://shop.example/p/1" | tracked }}')
    rendered = render_message(
        tmp_path, "t.j2", {"customer": {"id": 1}, "journey": "j", "step": "s", "variant": None}
    )
    assert rendered.body == "https://shop.example/p/1"


def test_a_non_link_token_is_not_redirected(sandbox: RunningSandbox) -> None:
    with httpx.Client(trust_env=False) as client:
        assert client.get(f"{sandbox.url}/r/not-a-token").status_code == 404
