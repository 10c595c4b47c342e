"""The README's walkthrough, its data story: `siyu db upgrade && siyu db seed`, a first tick
that switches the journey on, and the next tick enrolling the first purchases that arrived
since and sending to them through the sandbox. Run through the real CLI and the real Prefect
flow (the session's local test API), at a fixed moment so quiet hours never decide it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from typer.testing import CliRunner

from siyu.cli.main import app
from siyu.sandbox.client import SandboxClient
from siyu.sandbox.server import RunningSandbox
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Delivery, Enrollment, Order
from tests.conftest import ROOT

JOURNEY = "first-purchase-care"
SEEDED_AT = datetime(2026, 10, 12, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai, a Monday


def siyu(database_url: str, *args: str) -> str:
    """The real command in its own process, on the session's Prefect API (as a worker's
    environment would name it)."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "SIYU_PROJECT_DIR": str(ROOT),
        "SIYU_DATABASE_URL": database_url,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "COLUMNS": "100",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from siyu.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr[-3000:])
    return done.stdout


def test_the_seeded_walkthrough_enrolls_the_arrivals_and_sends_to_them(
    prefect_harness: None,
    database_url: str,
    sandbox: RunningSandbox,
) -> None:
    # upgrade and seed in this process (no Prefect in them); the ticks in their own
    env = {"SIYU_PROJECT_DIR": str(ROOT), "SIYU_DATABASE_URL": database_url}
    for command in (
        ["db", "upgrade"],
        ["db", "seed", "--customers", "400", "--arrivals", "60", "--now", SEEDED_AT.isoformat()],
    ):
        done = CliRunner().invoke(app, command, env=env)
        assert done.exit_code == 0, (command, done.output)
    assert "first purchases still to arrive" in done.stdout
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)

    # The first tick switches the journey on: 60 days of history are not a backlog to blast.
    siyu(database_url, "tick", JOURNEY, "--now", SEEDED_AT.isoformat(), "--channel-base-url",
         sandbox.url)  # fmt: skip
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 0
    assert SandboxClient(sandbox.url).messages() == []

    later = SEEDED_AT + timedelta(minutes=30)
    siyu(database_url, "tick", JOURNEY, "--now", later.isoformat(), "--channel-base-url",
         sandbox.url)  # fmt: skip
    with sessions() as session:
        arrived = set(
            session.scalars(
                select(Order.customer_id).where(
                    Order.order_seq == 1, Order.paid_at > SEEDED_AT, Order.paid_at <= later
                )
            )
        )
        enrolled = set(session.scalars(select(Enrollment.customer_id)))
        invited = set(
            session.scalars(
                select(Delivery.customer_id).where(
                    Delivery.step_id == "join-group", Delivery.status.in_(["sent", "pending"])
                )
            )
        )
    # 60 arrivals over two hours: one every two minutes, 15 in the first half hour
    assert len(arrived) == 15
    assert enrolled == arrived
    assert invited and invited <= arrived
    received = SandboxClient(sandbox.url).messages()
    assert len(received) == len(invited)
    assert {message["channel"] for message in received} == {"wecom"}
    engine.dispose()
