"""The data timetable through the real Prefect engine: the 17:00 sync imports the inbox's
exports, the 02:00 cleaning checks the data and computes segments, the 08:00 journeys run
after it — and a failed stage stops the ones after it for that data day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.pipeline.stages import UpstreamNotReady
from siyu.sandbox.server import RunningSandbox
from siyu.storage.models import Customer, Order, PipelineRun, SegmentMembership
from tests.conftest import local

MAPPING = """\
customers:
  columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, consent: 营销同意, city: 城市}
orders:
  columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额}
"""
CUSTOMERS = (
    "会员编号,姓名,手机号,营销同意,城市\nC1,王小明,13812345678,是,上海\nC2,李雷,13900001111,是,\n"
)
ORDERS = (
    "订单号,会员编号,支付时间,实付金额\n"
    "O1,C1,2026-11-02 10:00:00,99.00\nO2,C2,2026-11-02 11:00:00,10\n"
)


def at(day: float, hour: float) -> str:
    return local(day, hour).isoformat()


def runs(sessions: sessionmaker[Session]) -> dict[tuple[str, str], str]:
    with sessions() as session:
        return {
            (r.stage, r.data_day.isoformat()): r.status
            for r in session.scalars(select(PipelineRun))
        }


def artifact(key: str) -> Any:
    """The latest version of a Prefect artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return found[0] if found else None


def test_sync_clean_journeys_in_order_and_a_failed_stage_stops_the_rest(
    prefect_harness: None,
    project_env: str,
    sessions: sessionmaker[Session],
    sandbox: RunningSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.data_pipeline_flow import data_clean, data_journeys, data_sync

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("SIYU_INBOX_DIR", str(inbox))
    (inbox / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    (inbox / "customers-1102.csv").write_text(CUSTOMERS, encoding="utf-8")
    (inbox / "orders-1102.csv").write_text(ORDERS, encoding="utf-8")

    # the 08:00 journeys of 11-03 refuse to run before the cleaning of 11-02
    with pytest.raises(UpstreamNotReady, match="clean of 2026-11-02 has not succeeded"):
        data_journeys(now=at(1, 8))

    sync = data_sync(now=at(0, 17))
    assert sync["rows"] == 4 and sync["bad"] == 0
    assert sorted(p.name for p in (inbox / "done" / "2026-11-02").iterdir()) == [
        "customers-1102.csv",
        "orders-1102.csv",
    ]
    cleaned = data_clean(now=at(1, 2))
    outcomes = {row["check"]: row["outcome"] for row in cleaned["checks"]}
    assert outcomes["city"] == "warn"  # one of two customers has no city: 50 % > 5 %
    assert outcomes["order (customer, paid at, amount)"] == "ok"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 2
        assert set(session.scalars(select(SegmentMembership.segment))) >= {"new", "rfm-other"}
    journeys = data_journeys(now=at(1, 8), channel_base_url=sandbox.url)
    assert "first-purchase-care" in journeys
    quality, summary = artifact("data-quality"), artifact("first-purchase-care-graph")
    assert quality is not None and "missing_rate" in str(quality.data)
    assert summary is not None and "## This tick" in str(summary.data)
    assert "](data:image/svg+xml;base64," in str(summary.data)  # the journey picture
    funnel = artifact("first-purchase-care-funnel")  # the whole ledger: once a day
    assert funnel is not None and "## Funnel so far" in str(funnel.data)
    assert "| join-group |" in str(funnel.data) and "| day14-repurchase | sms |" in str(funnel.data)
    # a trigger may start a stage again, or before its time: it does nothing, and says why
    again = data_clean(now=at(1, 3), return_state=True)
    assert again.name == "Skipped" and "already succeeded" in str(again.message)
    early = data_journeys(now=at(0, 19), return_state=True)  # right after an on-time clean
    assert early.name == "Skipped" and "start at 08:00" in str(early.message)
    twice = data_journeys(now=at(1, 9), return_state=True)
    assert twice.name == "Skipped" and "already ran" in str(twice.message)
    assert runs(sessions) == {
        ("sync", "2026-11-02"): "succeeded",
        ("clean", "2026-11-02"): "succeeded",
        ("journeys", "2026-11-02"): "succeeded",
    }

    # next day: the same order exported twice under two numbers fails the checks
    (inbox / "orders-1103.csv").write_text(
        "订单号,会员编号,支付时间,实付金额\n"
        "O3,C1,2026-11-03 10:00:00,50\nO3b,C1,2026-11-03 10:00:00,50\n",
        encoding="utf-8",
    )
    data_sync(now=at(1, 17))
    with pytest.raises(Exception, match="data-quality checks failed"):
        data_clean(now=at(2, 2))
    with pytest.raises(UpstreamNotReady, match="clean of 2026-11-03 failed"):
        data_journeys(now=at(2, 8))
    assert runs(sessions)[("clean", "2026-11-03")] == "failed"
    assert ("journeys", "2026-11-03") not in runs(sessions)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 4
