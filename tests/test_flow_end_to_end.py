"""The compiled journey through the real Prefect engine and the real channel adapters, over
HTTP to the local sandbox: what only the orchestration shows (task names per step, retries,
the artifact) and exactly-once delivery counted at the provider's side."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Delivery
from tests.conftest import ROOT, Shop, local


def tick(now: datetime, sandbox: RunningSandbox, **options: Any) -> Any:
    """One flow run of the canonical journey at `now`; `options` go to journey_tick
    (partitions, processes)."""
    from flows.journey_flow import journey_tick

    return journey_tick(
        journey="first-purchase-care",
        now=now.isoformat(),
        channel_base_url=sandbox.url,
        return_state=True,
        **options,
    )


def task_runs(flow_run_id: UUID, expected: set[str]) -> list[Any]:
    """The flow run's task runs. Prefect 3 records them from events, asynchronously: under
    load the recorder lags, so wait (bounded) until the expected ones are there."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )
            if expected <= {run.name for run in runs} or time.monotonic() > deadline:
                return list(runs)
            time.sleep(0.5)


def test_a_tick_is_one_flow_run_with_one_task_per_step_sent_over_http(
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    sessions: sessionmaker[Session],
    shop: Shop,
) -> None:
    client = SandboxClient(sandbox.url)
    client.set_faults(auto_confirm=True)  # staff confirm WeCom tasks at once
    buyers = [shop.customer(f"顾客{i}") for i in range(6)]
    tick(local(0), sandbox)  # the journey is switched on
    for buyer in buyers:
        shop.order(buyer, local(0, 10), seq=1)
    shop.order(buyers[0], local(5, 12), seq=2)  # repurchases on day 5

    state = tick(local(0, 11), sandbox)
    assert state.is_completed()
    results = state.result()
    assert results["enroll"]["enrolled"] == 6 and results["join-group"]["pending"] == 6
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect_client:
        flow_run = prefect_client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.name == f"first-purchase-care @ {local(0, 11).isoformat()}"
    phases = {
        "enroll",
        "opt-outs",
        "goals",
        "exits",
        "breakers",
        "join-group",
        "day3-care",
        "day7-content",
        "day14-repurchase",
        "older-versions",
        "complete",
    }
    runs = task_runs(state.state_details.flow_run_id, phases)
    names = {run.name for run in runs}
    assert names == phases
    assert len(runs) == len(names), "one task run per phase, never one per recipient"
    step_run = next(run for run in runs if run.name == "day14-repurchase")
    assert step_run.empirical_policy.retries == 3  # the send tasks retry

    for day, hour in ((0, 12), (1, 11), (1, 12), (7, 11), (7, 12), (14, 11), (14, 12)):
        tick(local(day, hour), sandbox)
    tick(local(14, 12), sandbox)  # the same tick again: nothing is sent twice

    with sessions() as session:
        statuses = {
            (r[0], r[1]): r[2]
            for r in session.execute(
                select(Delivery.customer_id, Delivery.step_id, Delivery.status)
            )
        }
    for buyer in buyers[1:]:
        assert [
            statuses[(buyer, step)]
            for step in ("join-group", "day3-care", "day7-content", "day14-repurchase")
        ] == ["sent"] * 4
    assert (buyers[0], "day7-content") not in statuses  # left on day 5
    stats = client.stats()
    assert stats["duplicates"] == []
    received = client.messages()
    by_channel: dict[str, int] = {}
    for message in received:
        by_channel[message["channel"]] = by_channel.get(message["channel"], 0) + 1
    assert by_channel == {"wecom": 6 + 6, "service_account": 5, "sms": 5}
    assert any("回T退订" in m["content"] for m in received if m["channel"] == "sms")


def test_a_broken_journey_fails_the_flow_with_the_validation_report(
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    from flows.journey_flow import journey_tick
    from siyu.errors import SiyuError

    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "channels.yaml").write_text(
        (ROOT / "channels.yaml").read_text("utf-8"), encoding="utf-8"
    )
    (tmp_path / "journeys" / "j.yaml").write_text(
        "journey: broken\nentry: {event: order_paid}\nsteps:\n"
        "  - {id: a, send: wecon, template: nope.j2}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(tmp_path))
    with pytest.raises(SiyuError) as raised:
        journey_tick(journey="broken", now=local(0).isoformat(), channel_base_url=sandbox.url)
    assert "did you mean 'wecom'" in str(raised.value) and "nope.j2" in str(raised.value)
    assert os.environ["SIYU_PROJECT_DIR"] == str(tmp_path)


def test_a_template_breaking_the_content_rules_stops_the_tick_before_any_send(
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    shop: Shop,
) -> None:
    """Edited after `siyu deploy`: a banned absolute claim and no 回T退订 in a marketing SMS."""
    import shutil

    from flows.journey_flow import journey_tick
    from siyu.language.problems import SpecError

    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    shutil.copy(ROOT / "channels.yaml", tmp_path / "channels.yaml")
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "j.yaml").write_text(
        "journey: claims\nentry: {event: order_paid}\nquiet_hours: null\nsteps:\n"
        "  - {id: offer, send: sms, template: offer.j2}\n",
        encoding="utf-8",
    )
    (tmp_path / "templates" / "offer.j2").write_text(
        "【悦享生活】{{ customer.name }}，全网最低价，今天下单立减 10 元", encoding="utf-8"
    )
    monkeypatch.setenv("SIYU_PROJECT_DIR", str(tmp_path))
    buyer = shop.customer()
    shop.order(buyer, local(0, 10), seq=1)
    with pytest.raises(SpecError) as raised:
        journey_tick(journey="claims", now=local(0, 11).isoformat(), channel_base_url=sandbox.url)
    report = str(raised.value)
    assert "banned-word" in report and "sms-opt-out" in report
    assert SandboxClient(sandbox.url).messages() == []


def test_a_send_task_carries_its_channel_tag_where_an_operator_holds_the_channel(
    prefect_harness: None,
    project_env: str,
    sandbox: RunningSandbox,
    shop: Shop,
) -> None:
    """`prefect concurrency-limit create channel:wecom 10` holds WeCom: the WeCom step's task
    run is tagged and so counted against the limit; a channel without a limit is not tagged
    (a tagged task run costs Prefect 3.8.8 an API round per run, tasks/phases.py)."""
    from prefect.client.orchestration import get_client

    buyer = shop.customer()
    tick(local(0), sandbox)
    shop.order(buyer, local(0, 10), seq=1)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="channel:wecom", concurrency_limit=10)
        try:
            state = tick(local(1, 11), sandbox)  # day 1: join-group and day3-care are due
        finally:
            client.delete_concurrency_limit_by_tag("channel:wecom")
    assert state.is_completed()
    runs = task_runs(state.state_details.flow_run_id, {"join-group", "day3-care"})
    tags = {run.name: set(run.tags) for run in runs}
    assert tags["day3-care"] == {"channel:wecom"}
    assert tags["join-group"] == set()  # wecom_group_invite: no limit held
    assert tags["enroll"] == set()
