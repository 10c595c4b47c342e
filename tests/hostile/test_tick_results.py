"""Typed tick results: a phase's result carries the typed outcomes of its sends; labels
(`sent`, `skipped:no_consent`, `v1:day3:sent`) are made only where counts are shown, and no
code reads a label back into an outcome."""

from __future__ import annotations

import ast
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

from siyu.engine.context import EngineContext
from siyu.engine.receipts import Outcome
from siyu.engine.tick import PhaseResult, run_tick
from siyu.simulate.runner import (
    LedgerGroup,
    SimulationReport,
    SimulationSettings,
    StepLedger,
)
from siyu.storage.models import DeliveryStatus, ReasonCode
from tests.conftest import Shop, canonical_journey, local
from tests.recording_channel import RecordingChannel

ROOT = Path(__file__).resolve().parents[2]
SENT = Outcome(DeliveryStatus.SENT)
NO_CONSENT = Outcome(DeliveryStatus.SKIPPED, ReasonCode.NO_CONSENT)


def test_a_ticks_results_are_typed_and_read_as_labels(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    spec = canonical_journey(channels)
    buyer, refuser = shop.customer(), shop.customer(consent=False)
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    shop.order(refuser, local(0, 10), seq=1)
    first = run_tick(ctx, spec, local(0, 10.25))
    assert first["enroll"].counts == Counter({"enrolled": 2})
    assert first["enroll"] == {"enrolled": 2}
    results = run_tick(ctx, spec, local(1, 11))
    care = results["day3-care"]
    assert isinstance(care, PhaseResult)
    assert care.outcomes == Counter({SENT: 1, NO_CONSENT: 1})
    assert care.counts == Counter() and care.older == {}
    assert dict(care) == {"sent": 1, "skipped:no_consent": 1}
    assert care["sent"] == 1 and care["failed"] == 0
    assert results["enroll"] == {"enrolled": 0}  # a zero count is still shown, as before


def test_older_versions_are_kept_apart_by_version_and_step() -> None:
    result = PhaseResult(
        older={(1, "day3"): Counter({SENT: 2}), (2, "day3"): Counter({NO_CONSENT: 1})}
    )
    assert result.labels() == Counter({"v1:day3:sent": 2, "v2:day3:skipped:no_consent": 1})
    assert sum((c for c in result.sends()), Counter()) == Counter({SENT: 2, NO_CONSENT: 1})
    assert PhaseResult(Counter({"open:sms": 1})) == {"open:sms": 1}
    assert not PhaseResult()


def test_the_simulators_totals_come_from_typed_outcomes() -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    report = SimulationReport("j", SimulationSettings(start, start), customers=3)
    day = date(2026, 5, 1)
    report.outcomes[day].update({SENT: 3, NO_CONSENT: 2})
    report.outcomes[day][Outcome(DeliveryStatus.FAILED, ReasonCode.PROVIDER_FAILED, "isv.X")] += 1
    report.days[day]["opt-outs:opted_out"] += 4  # not a message due
    assert report.day_total(day) == 6
    assert report.day_total(day, DeliveryStatus.SENT) == 3
    assert report.day_total(day, DeliveryStatus.SKIPPED) == 2
    assert report.day_total(day, DeliveryStatus.FAILED) == 1
    assert report.day_total(date(2026, 5, 2)) == 0


def test_a_steps_ledger_counts_are_typed_and_read_as_labels() -> None:
    ledger = StepLedger()
    ledger.rows[LedgerGroup(DeliveryStatus.SENT)] += 2
    ledger.rows[LedgerGroup(DeliveryStatus.PENDING)] += 1
    ledger.rows[LedgerGroup(DeliveryStatus.SKIPPED, "no_consent:marketing")] += 3
    ledger.rows[LedgerGroup(DeliveryStatus.SKIPPED, "holdout")] += 1
    assert ledger == {
        "sent": 2,
        "pending": 1,
        "skipped:no_consent:marketing": 3,
        "skipped:holdout": 1,
    }
    assert ledger.total() == 7
    assert ledger.total(DeliveryStatus.SENT, DeliveryStatus.PENDING) == 3
    assert ledger.reasons(DeliveryStatus.SKIPPED) == [("no_consent:marketing", 3), ("holdout", 1)]


_STATUSES = {str(status) for status in DeliveryStatus}


def _reads_a_label(node: ast.Call) -> bool:
    """`x.split(":")`/`rsplit(":")` of anything, or `x.startswith("skipped")` of a status."""
    func = node.func
    if not isinstance(func, ast.Attribute) or not node.args:
        return False
    first = node.args[0]
    if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
        return False
    if func.attr in ("split", "rsplit"):
        return first.value == ":" and not _is_a_url(func.value)
    return func.attr == "startswith" and first.value.rstrip(":") in _STATUSES


def _is_a_url(target: ast.expr) -> bool:
    return isinstance(target, ast.Attribute) and target.attr.endswith("url")


def test_no_code_splits_an_outcome_label() -> None:
    found = []
    for folder in ("siyu", "tasks", "flows", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _reads_a_label(node):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
