"""simulate runs the real engine on a scratch copy: the user's database is unchanged, nothing
is sent, and the report matches the ledger the engine would have written."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.simulate.runner import SimulationSettings, simulate
from siyu.storage.models import Delivery, Enrollment
from tests.conftest import Shop, local
from tests.tools.project_files import ROOT


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """simulate copies a SQLite file (siyu/simulate/scratch.py), so these tests use SQLite
    even when the rest of the suite runs on PostgreSQL."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def journey(path: Path | None = None) -> JourneySpec:
    return load_journey(
        path or ROOT / "journeys" / "first_purchase.yaml",
        Catalog(set(STANDARD_CHANNELS), ROOT / "templates"),
    )


def history(shop: Shop) -> None:
    """Three first buyers at 10:00 on day 0: one repurchases on day 2, one has no consent."""
    loyal, plain, silent = (
        shop.customer("王小明"),
        shop.customer("李雷"),
        shop.customer("韩梅梅", consent=False),
    )
    for buyer in (loyal, plain, silent):
        shop.order(buyer, local(0, 10), seq=1)
    shop.order(loyal, local(2, 15), seq=2)


def run(sessions: sessionmaker[Session], spec: JourneySpec, tmp: Path, days: int = 20) -> object:
    url = str(sessions.kw["bind"].url)
    settings = SimulationSettings(local(0, 9), local(days, 9), timedelta(hours=1))
    return simulate(spec, url, ROOT / "templates", STANDARD_CHANNELS, settings, workdir=tmp)


def test_backtest_reports_per_step_and_leaves_the_database_alone(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    history(shop)
    report = run(sessions, journey(), tmp_path)
    assert report.ticks == 20 * 24 + 1  # type: ignore[attr-defined]
    steps = report.steps  # type: ignore[attr-defined]
    assert steps["join-group"] == {"sent": 2, "skipped:no_consent:marketing": 1}
    assert steps["day3-care"] == {"sent": 2, "skipped:no_consent:marketing": 1}
    # the repurchase on day 2 exits the loyal customer before day 7 and day 14
    assert steps["day7-content"] == {"sent": 1, "skipped:no_consent:marketing": 1}
    assert steps["day14-repurchase"] == {"sent": 1, "skipped:no_consent:marketing": 1}
    assert report.enrollments["exited"] == 1 and report.enrollments["goal_reached"] == 1  # type: ignore[attr-defined]
    volume = report.volume  # type: ignore[attr-defined]
    assert sum(volume["sms"].values()) == 1 and sum(volume["wecom"].values()) == 2
    day0 = min(report.days)  # type: ignore[attr-defined]
    assert report.days[day0]["enrolled"] == 3  # type: ignore[attr-defined]
    with sessions() as session:  # the real database got no engine state
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_two_versions_side_by_side(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    history(shop)
    text = (ROOT / "journeys" / "first_purchase.yaml").read_text(encoding="utf-8")
    variant = tmp_path / "v2.yaml"
    variant.write_text(text.replace("within: 3d", "within: 1d1h"), encoding="utf-8")
    a = run(sessions, journey(), tmp_path, days=4)
    b = run(sessions, journey(variant), tmp_path, days=4)
    # day3-care is due at +1d = 10:00 on day 1, inside the narrower window either way
    assert a.steps["day3-care"]["sent"] == b.steps["day3-care"]["sent"] == 2  # type: ignore[attr-defined]
    night = text.replace("at: 1d\n", "at: 10h\n").replace("within: 3d", "within: 11h")
    variant.write_text(night, encoding="utf-8")
    c = run(sessions, journey(variant), tmp_path, days=4)
    # due at 20:00: deferred by quiet hours to 08:00, past its 21:00 deadline → expired
    assert c.steps["day3-care"] == {"skipped:expired": 2, "skipped:no_consent:marketing": 1}  # type: ignore[attr-defined]


def test_the_backtest_obeys_the_contact_pressure_the_live_journey_obeys(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """policies.yaml's caps apply in a backtest as in the live ticks: with one marketing
    message per 30 days on any channel, the invitation goes out and the day-3 care waits."""
    from siyu.policies import Cap, Policies

    history(shop)
    url = str(sessions.kw["bind"].url)
    settings = SimulationSettings(local(0, 9), local(6, 9), timedelta(hours=1))
    free = simulate(journey(), url, ROOT / "templates", STANDARD_CHANNELS, settings)
    capped = simulate(
        journey(),
        url,
        ROOT / "templates",
        STANDARD_CHANNELS,
        settings,
        policies=Policies(caps=[Cap(name="one-a-month", channels="all", max=1, per="30d")]),
    )
    assert free.steps["day3-care"]["sent"] == 2 and free.quota_hits("day3-care") == 0
    assert capped.steps["join-group"]["sent"] == 2
    # the plain buyer's day-3 care waits under the cap; the loyal one's ends with the exit
    assert dict(capped.steps["day3-care"].labels()) == {
        "deferred:cap:one-a-month": 1,
        "skipped:exited": 1,
        "skipped:no_consent:marketing": 1,
    }
    assert capped.quota_hits("day3-care") == 1


def test_a_backtest_writes_the_ledger_the_live_ticks_write(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """Over the same history, at the same moments (the backtest's) and under the same contact
    pressure, the
    backtest's ledger and enrollments are those of the live engine's ticks (run_tick with
    channels that deliver), row for row: the backtest predicts what going live does."""
    from siyu.engine.context import EngineContext
    from siyu.engine.tick import run_tick
    from siyu.policies import Cap, Policies
    from siyu.simulate.scratch import copy_database
    from siyu.storage.engine import make_engine, make_sessionmaker
    from tests.recording_channel import recording_channels

    history(shop)
    for n in range(12):  # first orders through four days, at odd minutes of day and night
        buyer = shop.customer(f"顾客{n}", consent=n % 4 != 3)
        shop.order(buyer, local(n // 3, 7 + n * 1.37), seq=1)
        if n % 5 == 0:
            shop.order(buyer, local(n // 3 + 2, 16.5), seq=2)  # a repurchase: the goal
    policies = Policies(caps=[Cap(name="one-in-5-days", channels="all", max=1, per="5d")])
    settings = SimulationSettings(local(0, 9), local(12, 9))
    url = str(sessions.kw["bind"].url)
    live_copy = tmp_path / "live.db"
    copy_database(url, live_copy)  # the history, before either run (a consistent copy)
    kept = tmp_path / "backtest.db"
    report = simulate(
        journey(), url, ROOT / "templates", STANDARD_CHANNELS, settings,
        policies=policies, keep=kept,
    )  # fmt: skip

    engine = make_engine(f"sqlite:///{live_copy}")
    live = EngineContext(
        make_sessionmaker(engine),
        ROOT / "templates",
        dict(recording_channels()),  # type: ignore[arg-type]
        policies=policies,
    )
    for now in report.moments:  # the backtest's ticks: at each moment something can happen
        run_tick(live, journey(), now)
    engine.dispose()

    def state(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        engine = make_engine(f"sqlite:///{path}")
        with make_sessionmaker(engine)() as session:
            ledger = session.execute(
                select(
                    Delivery.customer_id, Delivery.step_id, Delivery.status,
                    Delivery.reason_code, Delivery.reason_detail, Delivery.due_at,
                    Delivery.sent_at, Delivery.attempts,
                ).order_by(Delivery.customer_id, Delivery.step_id)
            ).all()  # fmt: skip
            enrollments = session.execute(
                select(
                    Enrollment.customer_id, Enrollment.status, Enrollment.entered_at,
                    Enrollment.goal_reached_at, Enrollment.exited_at,
                ).order_by(Enrollment.customer_id)
            ).all()  # fmt: skip
        engine.dispose()
        return [tuple(r) for r in ledger], [tuple(r) for r in enrollments]

    backtest, live_state = state(kept), state(live_copy)
    assert backtest == live_state
    ledger, enrollments = backtest
    # what was compared has the rules in it: sends, the cap's waits run out (expired),
    # consent, exits on the goal
    outcomes = {(str(row[2]), str(row[3])) for row in ledger}
    assert {("sent", "None"), ("skipped", "expired"), ("skipped", "no_consent")} <= outcomes
    assert len(enrollments) > 10 and any(row[3] is not None for row in enrollments)


def test_an_event_at_the_first_ticks_own_moment_counts(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """The first tick switches the journey on at its own moment; an order at exactly that
    moment is an entrant (it was excluded when the window started after the activation)."""
    history(shop)  # the three first orders are at 10:00 on day 0
    url = str(sessions.kw["bind"].url)
    settings = SimulationSettings(local(0, 10), local(1, 10), timedelta(hours=1))
    report = simulate(journey(), url, ROOT / "templates", STANDARD_CHANNELS, settings)
    assert report.days[min(report.days)]["enrolled"] == 3


def test_settings_that_keep_a_step_from_coming_due_are_warned_of_before_the_run() -> None:
    """The ticks cannot miss a step (there is one at each due time, and when quiet hours
    end): what a setting can still do is end the backtest before a step comes due."""
    from siyu.simulate.runner import setting_warnings

    spec = journey()  # quiet hours 20:00-08:00 Asia/Shanghai; day14-repurchase at 14d
    for every in (None, timedelta(days=1), timedelta(days=7)):  # from midnight, in quiet hours
        assert setting_warnings(spec, SimulationSettings(local(0), local(30), every)) == []
    (short,) = setting_warnings(spec, SimulationSettings(local(0, 10), local(10, 10)))
    assert "step 'day14-repurchase' comes due 14d after entry" in short and "10d" in short


def test_a_daily_cadence_from_midnight_sends_as_the_moments_do(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """`--every 1d` from midnight put every tick in quiet hours: every message waited for
    ever. The moments include the end of quiet hours, and the cadence adds ticks only."""
    history(shop)
    url = str(sessions.kw["bind"].url)
    reports = [
        simulate(
            journey(),
            url,
            ROOT / "templates",
            STANDARD_CHANNELS,
            SimulationSettings(local(0), local(4), every),
        )  # fmt: skip
        for every in (None, timedelta(days=1))
    ]
    for report in reports:
        assert report.steps["join-group"] == {"sent": 2, "skipped:no_consent:marketing": 1}
        assert report.steps["day3-care"]["sent"] == 2
    assert reports[0].steps == reports[1].steps


def test_keep_leaves_the_backtests_database_for_summary_and_explain(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from siyu.cli.main import app

    history(shop)
    env = {"SIYU_PROJECT_DIR": str(ROOT), "SIYU_DATABASE_URL": str(sessions.kw["bind"].url)}
    kept = tmp_path / "kept"
    done = CliRunner().invoke(
        app,
        ["simulate", "first-purchase-care", "--start", local(0, 9).isoformat(), "--days", "3",
         "--keep", str(kept)],
        env={**env, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    copy = kept / "first-purchase-care.db"
    assert copy.is_file() and f"kept the backtest's database: {copy}" in done.stdout
    summary = CliRunner().invoke(
        app,
        ["summary", "first-purchase-care", "--database", f"sqlite:///{copy}"],
        env={**env, "COLUMNS": "200"},
    )
    assert summary.exit_code == 0, summary.output
    assert "join-group" in summary.stdout
    with sessions() as session:  # the real database still has no engine state
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 0


def test_the_html_report_of_a_backtest_shows_two_versions_side_by_side(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """`--html` writes siyu report's page for the backtest; with --compare the two versions'
    reports stand next to each other, each with the counts of its own backtest."""
    import re

    from typer.testing import CliRunner

    from siyu.cli.main import app
    from tests.browser import run_chromium
    from tests.project_copy import copy_project

    history(shop)
    project = copy_project(tmp_path / "project", ["journeys", "templates", "channels.yaml"])
    text = (project / "journeys" / "first_purchase.yaml").read_text(encoding="utf-8")
    night = project / "night.yaml"  # day-3 care at 20:00: quiet hours, then expired
    night.write_text(
        text.replace("at: 1d\n", "at: 10h\n").replace("within: 3d", "within: 11h"),
        encoding="utf-8",
    )
    page = tmp_path / "backtest.html"
    env = {"SIYU_PROJECT_DIR": str(project), "SIYU_DATABASE_URL": str(sessions.kw["bind"].url)}
    done = CliRunner().invoke(
        app,
        ["simulate", "first-purchase-care", "--compare", str(night), "--start",
         local(0, 9).isoformat(), "--days", "4", "--html", str(page)],
        env={**env, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert f"wrote {page}" in done.stdout
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "http" not in html.replace('xmlns="http://www.w3.org', "")
    a, b = html.split('id="version-2"')
    assert "A: first-purchase-care" in a and "B: first-purchase-care" in b
    assert "a tick at each moment something can happen; no message really sent" in a

    def funnel_row(half: str, step: str) -> list[int]:
        row = re.search(rf"<tr><td>{step}</td><td>all</td>(.*?)</tr>", half)
        assert row is not None, step
        return [int(n) for n in re.findall(r"<td>(\d+)</td>", row.group(1))]

    # due, sent, ... per the funnel's columns: A sends day-3 care to the two with consent
    assert funnel_row(a, "day3-care")[:2] == [3, 2]
    assert funnel_row(b, "day3-care")[:2] == [3, 0]
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # two reports, no element id twice
    profile = tmp_path / "chromium-profile"
    dom = run_chromium(profile, "--dump-dom", page.as_uri())
    assert dom.count('class="version"') == 2 and "day3-care" in dom


def test_the_output_reads_whole_at_80_columns(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """A terminal or a pipe of 80 columns (rich's width for a pipe): no step name, date,
    count or reason is cut."""
    from typer.testing import CliRunner

    from siyu.cli.main import app

    history(shop)
    env = {"SIYU_PROJECT_DIR": str(ROOT), "SIYU_DATABASE_URL": str(sessions.kw["bind"].url)}
    done = CliRunner().invoke(
        app,
        ["simulate", "first-purchase-care", "--compare", "first-purchase-care", "--start",
         local(0, 9).isoformat(), "--days", "8", "--every", "3h"],
        env={**env, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert "…" not in out
    for step in ("join-group", "day3-care", "day7-content", "day14-repurchase"):
        assert f"\n{step} " in out
    day0 = local(0, 9).date().isoformat()
    assert f"\n{day0} " in out
    assert "day3-care skipped: no_consent:marketing 1" in out
    tables = [line for line in out.splitlines() if "─" in line or line.startswith("20")]
    assert tables and max(len(line) for line in tables) <= 80


def test_sigterm_removes_the_scratch_copy(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    history(shop)
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {
        **os.environ,
        "SIYU_PROJECT_DIR": str(ROOT),
        "SIYU_DATABASE_URL": str(sessions.kw["bind"].url),
        "TMPDIR": str(scratch_root),
    }
    command = ["simulate", "first-purchase-care", "--start", local(0, 9).isoformat(),
               "--days", "3650", "--every", "1h"]  # fmt: skip
    running = subprocess.Popen(
        [sys.executable, "-c", "from siyu.cli.main import main; main()", *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(scratch_root.glob("siyu-simulate-*/scratch.db")):
            assert running.poll() is None and time.monotonic() < deadline, "no scratch copy made"
            time.sleep(0.05)
        time.sleep(0.5)  # into the ticks
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=60) == 143
    finally:  # a failed test leaves no ten-year backtest running on the machine
        if running.poll() is None:
            running.kill()
            running.wait()
    assert list(scratch_root.iterdir()) == []
