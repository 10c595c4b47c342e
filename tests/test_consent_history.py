"""Every writer of a consent or a suppression records the change, with its moment, in the same
transaction (consent_changes): the import (dated by the file's consent_at, else by the
import), opt-outs, unsubscribe links and refusals (suppress). Runs on SQLite and, with
SIYU_TEST_POSTGRES_URL, on PostgreSQL (where the import writes the history with COPY)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.optouts import suppress
from siyu.errors import ConfigError
from siyu.importer.csv_import import ImportAborted, import_csv
from siyu.importer.mapping import load_mapping
from siyu.storage.models import Consent, ConsentChange, Customer, Suppression
from tests.conftest import Shop

MAPPING = """\
customers:
  columns: {external_id: 会员编号, name: 姓名, consent: 营销同意, consent_at: 同意时间}
  timezone: Asia/Shanghai
"""
SHANGHAI = timedelta(hours=8)


def load(sessions: sessionmaker[Session], tmp: Path, text: str, mapping: str = MAPPING) -> None:
    (tmp / "m.yaml").write_text(mapping, encoding="utf-8")
    (tmp / "c.csv").write_text(text, encoding="utf-8")
    with sessions() as session, session.begin():
        result = import_csv(session, tmp / "c.csv", load_mapping(tmp / "m.yaml", "customers"))
    assert list(result.bad) == []


def history(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as session:
        names = dict(session.execute(select(Customer.id, Customer.external_id)).tuples().all())
        rows = session.scalars(select(ConsentChange).order_by(ConsentChange.id)).all()
        return [
            {
                "customer": names[r.customer_id],
                "kind": r.kind,
                "name": r.name,
                "previous": r.previous,
                "previous_since": r.previous_since,
                "state": r.state,
                "at": r.at,
                "source": r.source,
            }
            for r in rows
        ]


def consents(sessions: sessionmaker[Session]) -> dict[str, tuple[bool, datetime]]:
    with sessions() as session:
        found = session.execute(
            select(Customer.external_id, Consent.granted, Consent.updated_at).join(
                Consent, Consent.customer_id == Customer.id
            )
        ).all()
    return {external_id: (granted, at) for external_id, granted, at in found}


def test_an_import_dates_each_consent_change_by_consent_at_or_by_itself(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    load(
        sessions,
        tmp_path,
        "会员编号,姓名,营销同意,同意时间\n"
        "C1,甲,是,2026-03-01 10:00\n"  # dated: the consent holds from then
        "C2,乙,是,\n"  # undated: the database learns it now, no change is dated
        "C3,丙,否,2026-04-01T09:30:00+08:00\n",
    )
    march = datetime(2026, 3, 1, 10, tzinfo=UTC) - SHANGHAI
    april = datetime(2026, 4, 1, 1, 30, tzinfo=UTC)
    first = history(sessions)
    assert first == [
        {"customer": "C1", "kind": "consent", "name": "marketing", "previous": "absent",
         "previous_since": None, "state": "granted", "at": march, "source": "import"},
        {"customer": "C3", "kind": "consent", "name": "marketing", "previous": "absent",
         "previous_since": None, "state": "denied", "at": april, "source": "import"},
    ]  # fmt: skip
    imported = consents(sessions)
    assert imported["C1"] == (True, march) and imported["C3"] == (False, april)
    c2_since = imported["C2"][1]

    before = datetime.now(UTC)
    load(
        sessions,
        tmp_path,
        "会员编号,姓名,营销同意,同意时间\n"
        "C1,甲,否,2026-09-05 20:00\n"  # withdrawn, dated
        "C2,乙,否,\n"  # withdrawn, undated: at the import's time
        "C3,丙,否,2026-10-01 00:00\n",  # unchanged: nothing written, the date is not a change
    )
    after = datetime.now(UTC)
    second = history(sessions)[2:]
    assert [(c["customer"], c["previous"], c["previous_since"], c["state"]) for c in second] == [
        ("C1", "granted", march, "denied"),
        ("C2", "granted", c2_since, "denied"),
    ]
    assert second[0]["at"] == datetime(2026, 9, 5, 12, tzinfo=UTC)
    assert before <= second[1]["at"] <= after
    assert consents(sessions)["C2"] == (False, second[1]["at"])
    assert consents(sessions)["C3"] == (False, april)


def test_a_failed_import_leaves_no_history(
    sessions: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history is written in the import's transaction: an import that stops after a batch
    was written keeps neither the consents nor their changes."""
    from dataclasses import replace

    from siyu.importer.limits import import_limits

    monkeypatch.setattr("siyu.importer.csv_import.BATCH_ROWS", 2)
    (tmp_path / "m.yaml").write_text(MAPPING, encoding="utf-8")
    rows = "".join(f"C{n},甲,是,2026-03-01 10:00\n" for n in range(5))
    (tmp_path / "c.csv").write_text("会员编号,姓名,营销同意,同意时间\n" + rows, encoding="utf-8")
    limits = replace(import_limits(), max_rows=3)
    with pytest.raises(ImportAborted), sessions() as session, session.begin():
        import_csv(
            session, tmp_path / "c.csv", load_mapping(tmp_path / "m.yaml", "customers"),
            limits=limits,
        )  # fmt: skip
    assert history(sessions) == [] and consents(sessions) == {}


def test_consent_at_needs_the_consent_it_dates(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "customers:\n  columns: {external_id: id, name: name, consent_at: 同意时间}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"m.yaml:2:.*'consent_at' dates a consent: map"):
        load_mapping(tmp_path / "m.yaml", "customers")


def test_a_suppression_is_recorded_once_at_its_moment(
    sessions: sessionmaker[Session], shop: Shop
) -> None:
    customer = shop.customer()
    moment = datetime(2026, 11, 5, 4, 30, tzinfo=UTC)
    with sessions() as session, session.begin():
        assert suppress(session, customer, "sms", "sms reply 'TD'", moment)
        assert not suppress(session, customer, "sms", "sms reply 'T'", moment + timedelta(days=1))
        assert suppress(session, customer, "*", "unsubscribe link", moment + timedelta(days=2))
    changes = [{k: v for k, v in change.items() if k != "customer"} for change in history(sessions)]
    assert changes == [
        {"kind": "suppression", "name": "sms", "previous": "absent", "previous_since": None,
         "state": "suppressed", "at": moment, "source": "sms reply 'TD'"},
        {"kind": "suppression", "name": "*", "previous": "absent", "previous_since": None,
         "state": "suppressed", "at": moment + timedelta(days=2), "source": "unsubscribe link"},
    ]  # fmt: skip
    with sessions() as session:
        assert len(session.scalars(select(Suppression.id)).all()) == 2


def test_a_backtest_of_the_projects_database_replays_its_history(
    database_url: str, sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """Whichever the database (the PostgreSQL run streams the copy from the server, history
    included): a consent an import withdrew on day 5 lets the day-0 and day-1 messages go and
    stops the day-7 one."""
    from siyu.language.channel_kinds import STANDARD_CHANNELS
    from siyu.simulate.runner import SimulationSettings, simulate
    from tests.conftest import local
    from tests.tools.project_files import ROOT
    from tests.tools.test_simulate import journey
    from tests.tools.test_simulate_consent import import_members

    ids = import_members(sessions, tmp_path, [(1, True, local(-30))])
    shop.order(ids[1], local(0, 10), seq=1)
    import_members(sessions, tmp_path, [(1, False, local(5, 12))])
    settings = SimulationSettings(local(0, 9), local(9, 9), timedelta(hours=3))
    report = simulate(journey(), database_url, ROOT / "templates", STANDARD_CHANNELS, settings)
    assert report.steps["join-group"] == {"sent": 1}
    assert report.steps["day3-care"] == {"sent": 1}
    assert report.steps["day7-content"] == {"skipped:no_consent:marketing": 1}
    assert report.notes == []


def test_an_export_of_consent_changes_records_each_change_and_keeps_the_last(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A member named by several rows of one file (a CRM's log of consent changes): each
    change is recorded with its moment, in file order, and the member keeps the last; a row
    restating the consent in force is no change."""
    load(
        sessions,
        tmp_path,
        "会员编号,姓名,营销同意,同意时间\n"
        "C1,甲,是,2026-03-01 10:00\n"
        "C2,乙,否,2026-03-02 10:00\n"
        "C1,甲,否,2026-05-01 10:00\n"  # withdrawn
        "C1,甲,否,2026-06-01 10:00\n"  # restated: no change
        "C1,甲,是,2026-07-01 10:00\n",  # given again
    )
    march, may, july = (datetime(2026, m, 1, 2, tzinfo=UTC) for m in (3, 5, 7))
    found = list(
        (c["customer"], c["previous"], c["previous_since"], c["state"], c["at"])
        for c in sorted(history(sessions), key=lambda c: (c["customer"], c["at"]))
    )
    assert found == [
        ("C1", "absent", None, "granted", march),
        ("C1", "granted", march, "denied", may),
        ("C1", "denied", may, "granted", july),
        ("C2", "absent", None, "denied", datetime(2026, 3, 2, 2, tzinfo=UTC)),
    ]
    assert consents(sessions)["C1"] == (True, july)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 2
