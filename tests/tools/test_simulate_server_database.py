"""A backtest of the project's own database, whichever it is: on the PostgreSQL run of the
suite (SIYU_TEST_POSTGRES_URL) the history lives on the server and the scratch copy is streamed
from it; the report is the one a SQLite copy gives (tests/tools/test_simulate.py), and the
server's database gets no engine state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.simulate.runner import SimulationSettings, simulate
from siyu.storage.models import Enrollment
from tests.conftest import Shop, local
from tests.tools.project_files import ROOT
from tests.tools.test_simulate import history, journey


def test_the_backtest_copies_the_projects_database_whichever_it_is(
    database_url: str, sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    history(shop)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # eight days: every step these assertions name has gone out (day 7's at 10:00); the
    # 20 days of test_simulate.py's backtest, at ~25 ms a tick, would add ~7 s of CPU
    settings = SimulationSettings(local(0, 9), local(8, 9), timedelta(hours=1))
    report = simulate(
        journey(), database_url, ROOT / "templates", STANDARD_CHANNELS, settings, workdir=scratch
    )
    steps = report.steps
    assert steps["join-group"] == {"sent": 2, "skipped:no_consent:marketing": 1}
    assert steps["day7-content"] == {"sent": 1, "skipped:no_consent:marketing": 1}
    assert report.enrollments["exited"] == 1 and report.customers == 3
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 0
    assert list(scratch.iterdir()) == []  # the scratch copy is gone
