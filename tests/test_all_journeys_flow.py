"""The all-journeys flow ticks journeys by priority: the higher one wins a shared cap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Delivery
from tests.conftest import ROOT, Shop, local

JOURNEY = (
    "journey: {name}\npriority: {priority}\nquiet_hours: null\n"
    "entry: {{event: order_paid, where: order_seq = 1}}\n"
    "steps:\n  - {{id: note, send: sms, template: day14_coupon.j2}}\n"
)


def test_priority_decides_who_gets_the_capped_sms(
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sessions: sessionmaker[Session],
    shop: Shop,
) -> None:
    from flows.all_journeys_flow import all_journeys_tick

    (tmp_path / "journeys").mkdir()
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "channels.yaml", tmp_path / "channels.yaml")
    (tmp_path / "policies.yaml").write_text(
        "caps:\n  - {name: one-sms, channels: [sms], max: 1, per: 2d}\n", encoding="utf-8"
    )
    for name, priority in (("a-low", 1), ("z-high", 9)):  # alphabetical order is the reverse
        (tmp_path / "journeys" / f"{name}.yaml").write_text(
            JOURNEY.format(name=name, priority=priority), encoding="utf-8"
        )
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(tmp_path))
    buyer = shop.customer()
    all_journeys_tick(now=local(0).isoformat(), channel_base_url=sandbox.url)
    shop.order(buyer, local(0, 10), seq=1)

    results = all_journeys_tick(now=local(0, 11).isoformat(), channel_base_url=sandbox.url)

    assert list(results) == ["z-high", "a-low"]
    with sessions() as session:
        ledger = {
            r[0]: r[1] for r in session.execute(select(Delivery.journey_name, Delivery.reason))
        }
    assert ledger == {"z-high": None, "a-low": "cap:one-sms"}
    assert len(SandboxClient(sandbox.url).messages(channel="sms")) == 1
