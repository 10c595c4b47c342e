"""The typed ledger: deliveries.status and reason_code are checked by the database, the old
one-string reasons are converted by the migration (and back by its downgrade), and no module
parses a reason string any more."""

from __future__ import annotations

import ast
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from siyu.engine.context import EngineContext
from siyu.engine.receipts import Outcome, outcome_labels
from siyu.engine.send_step import run_step
from siyu.engine.tick import run_tick
from siyu.storage.engine import make_engine
from siyu.storage.migrate import alembic_config, upgrade
from siyu.storage.models import Delivery, DeliveryStatus, ReasonCode, reason_text
from tests.conftest import Shop, canonical_journey, local
from tests.recording_channel import RecordingChannel

ROOT = Path(__file__).resolve().parents[2]

# old reason → (reason_code, reason_detail) after the upgrade
OLD_REASONS: dict[str | None, tuple[str | None, str | None]] = {
    None: (None, None),
    "holdout": ("holdout", None),
    "no_consent:marketing": ("no_consent", "marketing"),
    "cap:weekly:sms": ("cap", "weekly:sms"),  # split at the first ':' only
    "render_error: day3.j2:2: UndefinedError: 'x' is undefined": (
        "render_error",
        "day3.j2:2: UndefinedError: 'x' is undefined",
    ),
    "not_confirmed: no staff confirmation in time": (
        "not_confirmed",
        "no staff confirmation in time",
    ),
    "retry:isv.BUSINESS_LIMIT_CONTROL": ("retry", "isv.BUSINESS_LIMIT_CONTROL"),
    "isv.MOBILE_NUMBER_ILLEGAL: bad number": ("other", "isv.MOBILE_NUMBER_ILLEGAL: bad number"),
    "timeout after retries: gateway": ("other", "timeout after retries: gateway"),
    "no colon and unknown": ("other", "no colon and unknown"),
}
STATUS_OF = {None: "sent", "retry:isv.BUSINESS_LIMIT_CONTROL": "deferred"}


def _seed_old_rows(url: str) -> dict[str, str | None]:
    """Rows written at revision 0004 (free-text reason); returns {idempotency key: reason}."""
    now = datetime(2026, 5, 1, tzinfo=UTC).isoformat()
    engine = make_engine(url)
    keys: dict[str, str | None] = {}
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO customers (id, name, timezone, created_at) "
                "VALUES (1, 'c', 'Asia/Shanghai', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO journeys (id, name, version, spec_hash, spec, activated_at, "
                "created_at) VALUES (1, 'j', 1, 'h', '{}', :now, :now)"
            ),
            {"now": now},
        )
        for i, reason in enumerate(OLD_REASONS, start=1):
            connection.execute(
                text(
                    "INSERT INTO enrollments (id, journey_id, journey_name, customer_id, "
                    "entry_key, entered_at, enrolled_at, status, holdout) "
                    "VALUES (:i, 1, 'j', 1, :key, :now, :now, 'active', false)"
                ),
                {"i": i, "key": f"order:{i}", "now": now},
            )
            key = f"key-{i}"
            keys[key] = reason
            connection.execute(
                text(
                    "INSERT INTO deliveries (enrollment_id, journey_name, step_id, customer_id,"
                    " channel, purpose, status, reason, idempotency_key, attempts, due_at, "
                    "created_at, updated_at) VALUES (:i, 'j', 's', 1, 'sms', 'marketing', "
                    ":status, :reason, :key, 0, :now, :now, :now)"
                ),
                {
                    "i": i,
                    "status": STATUS_OF.get(reason, "skipped"),
                    "reason": reason,
                    "key": key,
                    "now": now,
                },
            )
    engine.dispose()
    return keys


def test_upgrade_converts_old_reasons_and_downgrade_restores_them(database_url: str) -> None:
    from alembic import command

    upgrade(database_url, "0004")
    keys = _seed_old_rows(database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        rows = {
            key: (code, detail)
            for key, code, detail in connection.execute(
                text("SELECT idempotency_key, reason_code, reason_detail FROM deliveries")
            )
        }
    assert rows == {key: OLD_REASONS[reason] for key, reason in keys.items()}
    # what reports show is the old string
    assert {key: reason_text(*rows[key]) for key in keys} == keys
    with pytest.raises(IntegrityError, match="ck_deliveries_status"), engine.begin() as c:
        c.execute(text("UPDATE deliveries SET status = 'delivered'"))
    with pytest.raises(IntegrityError, match="ck_deliveries_reason_code"), engine.begin() as c:
        c.execute(text("UPDATE deliveries SET reason_code = 'whatever'"))
    engine.dispose()

    command.downgrade(alembic_config(database_url), "0004")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        back = {
            key: reason
            for key, reason in connection.execute(
                text("SELECT idempotency_key, reason FROM deliveries")
            )
        }
    engine.dispose()
    assert back == keys


def test_the_models_check_status_and_reason_code(sessions: object) -> None:
    from sqlalchemy.orm import sessionmaker

    assert isinstance(sessions, sessionmaker)
    with sessions() as session, pytest.raises(IntegrityError, match="ck_deliveries_status"):
        session.execute(
            text(
                "INSERT INTO deliveries (enrollment_id, journey_name, step_id, customer_id, "
                "channel, purpose, status, idempotency_key, attempts, due_at, created_at, "
                "updated_at) VALUES (1, 'j', 's', 1, 'sms', 'marketing', 'lost', 'k', 0, "
                "'2026-01-01', '2026-01-01', '2026-01-01')"
            )
        )
    assert [s.value for s in DeliveryStatus] == [
        "sending",
        "pending",
        "sent",
        "failed",
        "skipped",
        "deferred",
    ]
    assert ReasonCode("other") is ReasonCode.OTHER


def test_reason_text_joins_code_and_detail_in_the_old_shape() -> None:
    assert reason_text(None, None) is None
    assert reason_text(ReasonCode.HOLDOUT, None) == "holdout"
    assert reason_text(ReasonCode.NO_CONSENT, "marketing") == "no_consent:marketing"
    assert reason_text(ReasonCode.RENDER_ERROR, "a.j2:1: E: x") == "render_error: a.j2:1: E: x"
    assert reason_text(ReasonCode.PROVIDER_FAILED, "isv.X: no") == "isv.X: no"


_PARSERS = {"split", "partition", "rsplit", "rpartition", "startswith", "endswith", "like"}


def _parses_a_reason(node: ast.Call) -> bool:
    """`<something named reason…>.split(...)` and the like, or `….reason.like(...)`."""
    func = node.func
    if not isinstance(func, ast.Attribute) or func.attr not in _PARSERS:
        return False
    target = func.value
    while isinstance(target, (ast.BoolOp, ast.Call, ast.Subscript)):
        if isinstance(target, ast.BoolOp):  # (reason or "").split(...)
            target = target.values[0]
        elif isinstance(target, ast.Call):  # str(reason).split(...)
            if not target.args:
                return False
            target = target.args[0]
        else:
            target = target.value
    name = (
        target.id
        if isinstance(target, ast.Name)
        else target.attr
        if isinstance(target, ast.Attribute)
        else ""
    )
    return "reason" in name.lower() and "exit_reason" not in name.lower()


def test_no_module_parses_a_reason_string() -> None:
    """Reasons are a code and a detail: nothing splits, partitions or prefix-matches one."""
    found = []
    for folder in ("db", "siyu", "tasks", "flows"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" in path.parts:  # the migration converts the old strings, once
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and _parses_a_reason(node):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_a_ticks_step_counts_are_typed_and_shown_as_labels(
    ctx: EngineContext, shop: Shop, channels: dict[str, RecordingChannel]
) -> None:
    """run_step counts (status, code) pairs; the tick shows them as `skipped:no_consent`."""
    spec = canonical_journey(channels)
    buyer, refuser = shop.customer(), shop.customer(consent=False)
    run_tick(ctx, spec, local(0))
    shop.order(buyer, local(0, 10), seq=1)
    shop.order(refuser, local(0, 10), seq=1)
    run_tick(ctx, spec, local(0, 10.25))  # join-group (not marketing consent) is sent to both
    step = next(s for s in spec.steps if s.id == "day3-care")
    counts = run_step(ctx, spec, step, local(1, 11))
    assert counts == Counter(
        {
            Outcome(DeliveryStatus.SENT): 1,
            Outcome(DeliveryStatus.SKIPPED, ReasonCode.NO_CONSENT): 1,
        }
    )
    assert outcome_labels(counts) == Counter({"sent": 1, "skipped:no_consent": 1})
    with ctx.sessions() as session:
        row = session.scalars(select(Delivery).where(Delivery.customer_id == refuser)).all()
    skipped = next(r for r in row if r.step_id == "day3-care")
    assert (skipped.status, skipped.reason_code, skipped.reason_detail) == (
        DeliveryStatus.SKIPPED,
        ReasonCode.NO_CONSENT,
        "marketing",
    )
    assert skipped.reason == "no_consent:marketing"


def test_outcome_labels_keep_the_shown_shape() -> None:
    assert Outcome(DeliveryStatus.DEFERRED, ReasonCode.QUIET_HOURS).label == "deferred:quiet_hours"
    failed = Outcome(DeliveryStatus.FAILED, ReasonCode.PROVIDER_FAILED, note="isv.X")
    assert failed.label == "failed:isv.X"
    assert Outcome(DeliveryStatus.SENDING, note="no_receipt").label == "sending:no_receipt"
    assert Outcome("claimed_elsewhere").label == "claimed_elsewhere"
