"""`siyu resolve`: the messages held in doubt (a channel that can neither deduplicate nor look
a message up may have sent them) are listed, and a person's decision is recorded: it arrived
(sent), or it did not (sent again at the next tick). Never sent again without that decision."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from siyu.engine.ledger import idempotency_key
from siyu.engine.versions import ensure_journey
from siyu.project import Project
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.migrate import upgrade
from siyu.storage.models import Customer, Delivery, DeliveryStatus, Enrollment, ReasonCode
from tests.conftest import fresh_database_url
from tests.hostile.test_cli_conventions import JOURNEY, PROJECT_FILES, one_line_error, run
from tests.project_copy import copy_project

MOMENT = datetime(2026, 9, 10, 4, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project", PROJECT_FILES)


@pytest.fixture
def database(project: Path) -> Iterator[str]:
    """Customer 42 (CRM0000042), whose day-3 care message is held in doubt."""
    with fresh_database_url(project, "resolve") as url:
        upgrade(url)
        engine = make_engine(url)
        spec = Project(project).journey(JOURNEY)
        with make_sessionmaker(engine)() as session, session.begin():
            session.add(Customer(id=42, external_id="CRM0000042", name="王小明", created_at=MOMENT))
            journey = ensure_journey(session, spec, MOMENT)
            enrollment = Enrollment(
                journey_id=journey.id, journey_name=JOURNEY, customer_id=42,
                entry_key="order:1", entered_at=MOMENT, enrolled_at=MOMENT,
            )  # fmt: skip
            session.add(enrollment)
            session.flush()
            session.add(
                Delivery(
                    enrollment_id=enrollment.id, journey_name=JOURNEY, step_id="day3-care",
                    customer_id=42, channel="wecom", purpose="service",
                    idempotency_key=idempotency_key(JOURNEY, enrollment.id, "day3-care"),
                    status=DeliveryStatus.DEFERRED, reason_code=ReasonCode.IN_DOUBT,
                    reason_detail="the answer to the call was lost", attempts=1,
                    due_at=MOMENT, created_at=MOMENT, updated_at=MOMENT,
                )
            )  # fmt: skip
        engine.dispose()
        yield url


def _row(url: str) -> Delivery:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        row = session.scalars(select(Delivery)).one()
    engine.dispose()
    return row


def test_resolve_lists_the_messages_in_doubt(project: Path, database: str) -> None:
    listed = run(project, database, "resolve", JOURNEY)
    assert listed.exit_code == 0, listed.output
    assert "1 message(s) in doubt" in listed.stdout
    assert "customer 42  day3-care  wecom  since 2026-09-10 12:00 Asia/Shanghai" in listed.stdout
    assert "answer to the call was lost" in listed.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["42", "--sent", "--send-again"], "--sent and --send-again exclude each other"),
        (["42", "--step", "day3-car", "--sent"], "did you mean 'day3-care'?"),
        (["42", "--step", "join-group", "--sent"], "has no message in doubt"),
        (["--sent"], "name the customer"),
    ],
)
def test_a_wrong_decision_is_one_line_and_changes_nothing(
    project: Path, database: str, args: list[str], error: str
) -> None:
    assert error in one_line_error(run(project, database, "resolve", JOURNEY, *args))
    assert _row(database).reason_code == ReasonCode.IN_DOUBT


def test_it_arrived_is_recorded_as_sent(project: Path, database: str) -> None:
    done = run(project, database, "resolve", JOURNEY, "CRM0000042", "--sent")
    assert done.exit_code == 0, done.output
    assert "customer 42, step day3-care: recorded as sent" in done.stdout
    row = _row(database)
    assert row.status == DeliveryStatus.SENT and row.sent_at == MOMENT
    assert "0 message(s) in doubt" in run(project, database, "resolve", JOURNEY).stdout


def test_it_did_not_arrive_is_sent_again_at_the_next_tick(project: Path, database: str) -> None:
    done = run(project, database, "resolve", JOURNEY, "42", "--send-again")
    assert done.exit_code == 0, done.output
    row = _row(database)
    assert row.status == DeliveryStatus.DEFERRED and row.reason_code == ReasonCode.RETRY
    assert row.next_attempt_at is not None and row.provider_code is None  # claimable, not in doubt


def test_the_report_shows_the_messages_held_until_a_person_decides(
    project: Path, database: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    assert run(project, database, "report", JOURNEY, "-o", str(out)).exit_code == 0
    page = out.read_text(encoding="utf-8")
    assert "Held for a person: messages in doubt" in page
    assert (
        "<td>day3-care</td><td>wecom</td><td>1</td><td>2026-09-10 12:00 Asia/Shanghai</td>" in page
    )
    assert f"siyu resolve {JOURNEY}" in page and "王小明" not in page
    assert run(project, database, "resolve", JOURNEY, "42", "--sent").exit_code == 0
    assert run(project, database, "report", JOURNEY, "-o", str(out)).exit_code == 0
    assert "messages in doubt" not in out.read_text(encoding="utf-8")  # decided: not held
