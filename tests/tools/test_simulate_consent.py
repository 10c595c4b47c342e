"""A backtest sees consents and suppressions as they were at each simulated moment, from their
history (consent_changes): an opt-out midway stops only the later messages, a consent given
midway lets only the later ones go, and the backtest's ledger equals the live ticks' when
consent changes during the period. What the data does not date stays as it is, and is said."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.optouts import apply_sms_replies, apply_unsubscribe, suppress
from siyu.importer.csv_import import import_csv
from siyu.importer.mapping import load_mapping
from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.simulate.runner import SimulationReport, SimulationSettings, simulate
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Consent, Customer, Delivery, Suppression
from tests.conftest import Shop, local
from tests.tools.project_files import ROOT
from tests.tools.test_simulate import journey

MAPPING = """\
customers:
  columns: {external_id: id, name: name, mobile: mobile, wecom_external_userid: wecom,
            wechat_openid: openid, consent: consent, consent_at: consent_at}
"""
STEPS = ("join-group", "day3-care", "day7-content", "day14-repurchase")
# first_purchase.yaml after a first order at 10:00 on day 0: the invitation at once, the care
# at day 1 10:00 (wecom), the content at day 7 (service account), the coupon at day 14 (SMS)
SENT = dict.fromkeys(STEPS, "sent")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """simulate's tests run on SQLite (as tests/tools/test_simulate.py)."""
    return f"sqlite:///{tmp_path / 'test.db'}"


def import_members(
    sessions: sessionmaker[Session],
    tmp: Path,
    members: list[tuple[int, bool, datetime | None]],
) -> dict[int, int]:
    """(n, consent, consent_at or None) through `siyu import`'s loader; n → customer id."""
    (tmp / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    lines = ["id,name,mobile,wecom,openid,consent,consent_at"]
    for n, granted, at in members:
        lines.append(
            f"M{n},会员{n},1390000{n:04d},wx{n:030d},p{n:027d},{'是' if granted else '否'},"
            f"{at.isoformat() if at else ''}"
        )
    path = tmp / "members.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with sessions() as session, session.begin():
        result = import_csv(session, path, load_mapping(tmp / "mapping.yaml", "customers"))
        assert list(result.bad) == []
        found = session.execute(select(Customer.external_id, Customer.id)).tuples().all()
    ids = dict(found)
    return {n: ids[f"M{n}"] for n, _, _ in members}


def backtest(
    sessions: sessionmaker[Session],
    tmp: Path,
    days: int = 15,
    every: timedelta = timedelta(hours=1),
) -> tuple[SimulationReport, dict[int, dict[str, str]]]:
    """The backtest from 09:00 on day 0, and each customer's ledger: step → status[:reason]."""
    url = str(sessions.kw["bind"].url)
    kept = tmp / f"backtest-{days}-{every.total_seconds():.0f}.db"
    settings = SimulationSettings(local(0, 9), local(days, 9), every)
    report = simulate(
        journey(), url, ROOT / "templates", STANDARD_CHANNELS, settings, workdir=tmp, keep=kept
    )
    engine = make_engine(f"sqlite:///{kept}")
    with make_sessionmaker(engine)() as session:
        rows = session.execute(
            select(Delivery.customer_id, Delivery.step_id, Delivery.status, Delivery.reason_code)
        ).all()
    engine.dispose()
    ledger: dict[int, dict[str, str]] = {}
    for customer, step, status, code in rows:
        ledger.setdefault(customer, {})[step] = f"{status}:{code}" if code else str(status)
    return report, ledger


def test_a_consent_withdrawn_or_given_midway_changes_only_the_later_messages(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """Consent as the imports dated it: withdrawn on day 5, the day-7 and day-14 messages are
    not sent (the earlier ones were); given on day 3, only those two are. Before, a backtest
    took today's consent for every day: the first customer got nothing, the second all."""
    early = local(-30)
    ids = import_members(
        sessions, tmp_path, [(1, True, early), (2, False, early), (3, True, early)]
    )
    for customer in ids.values():
        shop.order(customer, local(0, 10), seq=1)
    import_members(sessions, tmp_path, [(1, False, local(5, 12)), (2, True, local(3, 12))])

    report, ledger = backtest(sessions, tmp_path)
    no_consent = "skipped:no_consent"
    assert ledger[ids[1]] == {
        "join-group": "sent",
        "day3-care": "sent",
        "day7-content": no_consent,
        "day14-repurchase": no_consent,
    }
    assert ledger[ids[2]] == {
        "join-group": no_consent,
        "day3-care": no_consent,
        "day7-content": "sent",
        "day14-repurchase": "sent",
    }
    assert ledger[ids[3]] == SENT
    assert report.notes == []  # every consent here is dated
    with sessions() as session:  # the database keeps today's consents
        granted = dict(session.execute(select(Consent.customer_id, Consent.granted)).tuples().all())
    assert granted == {ids[1]: False, ids[2]: True, ids[3]: True}


def test_an_opt_out_midway_stops_only_the_later_messages(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Suppressions apply from the moment they were written: an unsubscribe link on day 5, a
    STOP (回TD退订) on day 10 that the live tick turned into a suppression, a channel's
    refusal on day 0; one from before the period applies throughout."""
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", "test-only-signing-key-1234")
    from siyu.storage.models import Event
    from siyu.unsubscribe import make_token

    link, stop, refused, before = (shop.customer(name) for name in ("甲", "乙", "丙", "丁"))
    for customer in (link, stop, refused, before):
        shop.order(customer, local(0, 10), seq=1)
    with sessions() as session, session.begin():
        apply_unsubscribe(session, make_token(link, "*"), local(5, 12))
        session.add(
            Event(
                customer_id=stop,
                name="sms_reply",
                occurred_at=local(10, 15),
                properties={"text": "TD"},
            )
        )
        session.flush()
        assert apply_sms_replies(session, ["TD"], local(10, 16)) == 1  # the live tick at 16:00
        suppress(session, refused, "wecom", "refused:48002 blocked", local(0, 12))
        suppress(session, before, "*", "unsubscribe link", local(-3))

    report, ledger = backtest(sessions, tmp_path)
    suppressed = "skipped:suppressed"
    assert ledger[link] == {
        "join-group": "sent",
        "day3-care": "sent",
        "day7-content": suppressed,
        "day14-repurchase": suppressed,
    }
    assert ledger[stop] == {**SENT, "day14-repurchase": suppressed}
    assert ledger[refused] == {**SENT, "day3-care": suppressed}
    assert ledger[before] == dict.fromkeys(STEPS, suppressed)
    assert report.notes == []
    with sessions() as session:  # the database keeps today's suppressions
        assert len(session.scalars(select(Suppression.id)).all()) == 4


def test_a_consent_the_data_does_not_date_is_kept_and_said(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """A consent imported without consent_at is known only since the import (today), one
    written by hand on day 2 only since then: the backtest keeps both as they are and says
    for how many customers, and until when. A consent dated before the period is not
    counted."""
    dated = shop.customer("早")  # consent since day -30
    imported = import_members(sessions, tmp_path, [(1, True, None)])[1]
    for customer in (dated, imported):
        shop.order(customer, local(0, 10), seq=1)
    report, ledger = backtest(sessions, tmp_path, days=3, every=timedelta(hours=6))
    assert ledger[imported]["join-group"] == "sent"  # kept as it is
    assert report.notes == [
        "consent of 1 customer(s) is as the data first records it (today's, without history), "
        "not as it was, for the whole backtest; an import dates consents from a mapped "
        "consent_at column"
    ]

    from typer.testing import CliRunner

    from siyu.cli.main import app

    page = tmp_path / "backtest.html"
    env = {"SIYU_PROJECT_DIR": str(ROOT), "SIYU_DATABASE_URL": str(sessions.kw["bind"].url)}
    done = CliRunner().invoke(
        app,
        ["simulate", "first-purchase-care", "--start", local(0, 9).isoformat(), "--days", "3",
         "--every", "6h", "--html", str(page)],
        env=env,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    said = "consent of 1 customer(s) is as the data first records it"
    assert f"note: {said}" in " ".join(done.stdout.split())  # under the header
    assert f"note: {said}" in page.read_text(encoding="utf-8")  # and in the page's subtitle

    by_hand = shop.customer("手")
    with sessions() as session, session.begin():
        session.execute(
            update(Consent).where(Consent.customer_id == by_hand).values(updated_at=local(2))
        )
        # the import's consent is dated now: only the hand-written one is undated
        session.execute(
            update(Consent).where(Consent.customer_id == imported).values(updated_at=local(-1))
        )
    report, _ = backtest(sessions, tmp_path, days=3, every=timedelta(hours=3))
    assert len(report.notes) == 1
    assert "consent of 1 customer(s)" in report.notes[0]
    assert "until 2026-11-04 00:00;" in report.notes[0]  # local(2), Asia/Shanghai


def test_a_backtest_writes_the_ledger_the_live_ticks_write_when_consent_changes(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live engine ticks through the period while consents change at their moments (an
    import dated by consent_at, an unsubscribe link, a STOP reply the ticks apply); then the
    backtest of the same period over the database it left: the same ledger, row for row."""
    monkeypatch.setenv("SIYU_UNSUBSCRIBE_SECRET", "test-only-signing-key-1234")
    from siyu.engine.context import EngineContext
    from siyu.engine.tick import run_tick
    from siyu.storage.models import Event
    from siyu.unsubscribe import make_token
    from tests.recording_channel import recording_channels

    early = local(-30)
    members = [(n, n % 3 != 2, early) for n in range(1, 13)]
    ids = import_members(sessions, tmp_path, members)
    for n, customer in ids.items():  # first orders through four days, at odd minutes
        shop.order(customer, local(n // 3, 9.5 + n * 1.37), seq=1)
    spec = journey()
    settings = SimulationSettings(local(0, 9), local(16, 9), timedelta(hours=2))

    def withdraw(n: int, at: datetime) -> None:
        import_members(sessions, tmp_path, [(n, False, at)])

    def grant(n: int, at: datetime) -> None:
        import_members(sessions, tmp_path, [(n, True, at)])

    def unsubscribe(n: int, at: datetime) -> None:
        with sessions() as session, session.begin():
            apply_unsubscribe(session, make_token(ids[n], "*"), at)

    def stop(n: int, at: datetime) -> None:  # the reply arrives; the next tick applies it
        with sessions() as session, session.begin():
            session.add(
                Event(
                    customer_id=ids[n],
                    name="sms_reply",
                    occurred_at=at,
                    properties={"text": "退订"},
                )
            )

    changes = sorted(
        [
            (local(0, 13.25), withdraw, 1),  # between two ticks, before the day-1 care
            (local(3, 11), unsubscribe, 4),  # exactly at a tick's moment: counts for it
            (local(4, 16.5), grant, 2),  # consent after the first messages' time
            (local(9, 8.1), withdraw, 7),
            (local(6, 2), grant, 5),
            (local(12, 21), stop, 3),
            (local(5, 9.9), unsubscribe, 11),
        ],
        key=lambda change: change[0],
    )
    # The live ticks run at every moment the backtest could tick at: those of a backtest of
    # the history before the changes, the changes' own, and the cadence. More ticks than
    # needed change nothing (tests/tools/test_simulate_moments.py); the backtest's moments
    # are checked to be among them below.
    url = str(sessions.kw["bind"].url)
    before = simulate(spec, url, ROOT / "templates", STANDARD_CHANNELS, settings, workdir=tmp_path)
    ticks = sorted({*before.moments, *(at for at, _, _ in changes), *settings.cadence()})
    live = EngineContext(sessions, ROOT / "templates", dict(recording_channels()))  # type: ignore[arg-type]
    pending = list(changes)
    for now in ticks:
        while pending and pending[0][0] <= now:
            at, change, n = pending.pop(0)
            change(n, at)
        run_tick(live, spec, now)
    assert not pending

    kept = tmp_path / "backtest.db"
    report = simulate(
        spec, url, ROOT / "templates", STANDARD_CHANNELS, settings, workdir=tmp_path, keep=kept
    )
    assert set(report.moments) <= set(ticks), "the live engine ticked at every backtest moment"

    columns = (
        Delivery.customer_id, Delivery.step_id, Delivery.status, Delivery.reason_code,
        Delivery.reason_detail, Delivery.due_at, Delivery.sent_at, Delivery.attempts,
    )  # fmt: skip
    order = (Delivery.customer_id, Delivery.step_id)
    with sessions() as session:
        live_ledger = session.execute(select(*columns).order_by(*order)).all()
    engine = make_engine(f"sqlite:///{kept}")
    with make_sessionmaker(engine)() as session:
        backtest_ledger = session.execute(select(*columns).order_by(*order)).all()
    engine.dispose()
    assert [tuple(r) for r in backtest_ledger] == [tuple(r) for r in live_ledger]
    # what was compared has the changes in it: each customer's messages before and after
    by_customer: dict[int, dict[str, str]] = {}
    for row in live_ledger:
        by_customer.setdefault(row[0], {})[row[1]] = f"{row[2]}:{row[3]}" if row[3] else str(row[2])
    assert by_customer[ids[1]]["join-group"] == "sent"  # withdrawn at 13:15 on day 0
    assert by_customer[ids[1]]["day3-care"] == "skipped:no_consent"
    assert by_customer[ids[2]]["day3-care"] == "skipped:no_consent"  # given on day 4
    assert by_customer[ids[2]]["day7-content"] == "sent"
    assert by_customer[ids[4]]["day3-care"] == "sent"  # unsubscribed on day 3
    assert by_customer[ids[4]]["day7-content"] == "skipped:suppressed"
    assert by_customer[ids[3]]["day7-content"] == "sent"  # STOP on day 12
    assert by_customer[ids[3]]["day14-repurchase"] == "skipped:suppressed"
    assert report.notes == []
