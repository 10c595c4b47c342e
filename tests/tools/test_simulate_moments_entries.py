"""The backtest's moments (siyu.simulate.moments) for what tests/tools/test_simulate_moments.py
does not reach: a calendar entry, a segment entry, SMS replies that opt out, entries from an
entry lookback before the start (one exactly at it), and a blocked entry event whose re-entry
falls outside the late events' window. Each backtest's ledger and
enrollments equal, column for column, those of the engine ticked at every minute of the same
span (tests/tools/minute_ticks.py); each span is a few hours, at ~20 ms a minute's tick."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.engine.event_sources import LATE_EVENTS
from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.simulate.runner import SimulationReport, SimulationSettings, simulate
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Event, SegmentMembership, Suppression
from tests.conftest import DAY0, Shop
from tests.tools.minute_ticks import Rows, every_minute, state
from tests.tools.project_files import ROOT


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"  # simulate copies a SQLite file


def at(hour: int, minute: int) -> datetime:
    """A whole minute of Shanghai's wall clock on day 0, as UTC."""
    return DAY0 + timedelta(hours=hour, minutes=minute)


def journey(tmp_path: Path, text: str) -> JourneySpec:
    path = tmp_path / "minute_moments.yaml"
    path.write_text(text, encoding="utf-8")
    return load_journey(path, Catalog(set(STANDARD_CHANNELS), ROOT / "templates"))


def compared(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    spec: JourneySpec,
    start: datetime,
    end: datetime,
    late_events: timedelta = LATE_EVENTS,
) -> tuple[tuple[Rows, Rows], SimulationReport]:
    """The state ticking every minute from `start` to `end` leaves, asserted equal to the
    backtest's at its moments alone and with an hourly tick besides; and the backtest's
    report (at the moments alone)."""
    url = str(sessions.kw["bind"].url)
    every_minute(url, tmp_path / "minutes.db", spec, start, end, late_events=late_events)
    expected = state(f"sqlite:///{tmp_path / 'minutes.db'}")
    reports = []
    for every in (None, timedelta(hours=1)):
        kept = tmp_path / f"moments-{every}.db"
        reports.append(
            simulate(
                spec,
                url,
                ROOT / "templates",
                STANDARD_CHANNELS,
                SimulationSettings(start, end, every),
                keep=kept,
            )  # fmt: skip
        )
        assert state(f"sqlite:///{kept}") == expected, f"every={every}"
    assert reports[0].ticks < (end - start) / timedelta(minutes=5)  # far fewer than minutes
    return expected, reports[0]


# Each firing enrolls the audience (re-entry `always`, a calendar's default): 10:00 enrolls,
# 10:45 and 11:00 find them still inside (the sms is due 11:30), 11:45 enrolls again; its sms
# is due 13:15, inside quiet hours, and goes at 13:20.
CALENDAR = """
journey: minute-moments
timezone: Asia/Shanghai
quiet_hours: "13:00-13:20"
entry: {calendar: "0,45 10,11 * * *", audience: "name <> '丙'"}
steps:
  - {id: topic, within: 30m, send: wecom, template: weekly_topic.j2}
  - {id: recall, at: 90m, send: sms, template: winback_sms.j2}
"""


def test_a_calendar_entrys_firings(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    ids = {name: shop.customer(name) for name in ("甲", "乙", "丙")}
    shop.customer("丁", consent=False)
    (ledger, enrollments), report = compared(
        sessions, tmp_path, journey(tmp_path, CALENDAR), at(9, 0), at(13, 30)
    )
    # the data has what was meant to be compared: two firings' entries, the blocked ones
    # between, the second recall held by quiet hours
    entered = [(row[0], row[3]) for row in enrollments if row[0] == ids["甲"]]
    assert entered == [(ids["甲"], at(10, 0)), (ids["甲"], at(11, 45))]
    assert ids["丙"] not in {row[0] for row in enrollments}
    recalls = [row for row in ledger if row[0] == ids["甲"] and row[1] == "recall"]
    assert [(row[2], row[5], row[6]) for row in recalls] == [
        ("sent", at(11, 30), at(11, 30)),
        ("sent", at(13, 15), at(13, 20)),
    ]
    assert {at(10, 0), at(10, 45), at(11, 0), at(11, 45), at(13, 20)} <= set(report.moments)


# Each customer entering `churned` enters (re-entry `always`: a second stay enters once the
# first enrollment has ended, a minute after it ends); a repurchase is the goal.
SEGMENT = """
journey: minute-moments
timezone: Asia/Shanghai
entry: {segment: churned, reentry: always}
goal: {event: order_paid, within: 1d}
steps:
  - {id: recall-coupon, within: 1h, send: sms, template: winback_sms.j2}
  - {id: recall-care, at: 2h, send: wecom, template: winback_wecom.j2}
"""


def test_a_segment_entrys_stays(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    ids = {name: shop.customer(name) for name in ("早", "中", "晚", "再", "前", "别")}
    stays = [
        ("早", "churned", at(9, 17), at(9, 50)),
        ("中", "churned", at(10, 3), None),
        ("晚", "churned", at(11, 41), None),
        ("再", "churned", at(9, 2), at(9, 40)),
        ("再", "churned", at(10, 31), None),  # inside until 11:02: enters at 11:03
        ("前", "churned", at(8, 59), None),  # before the start, no lookback: not an entrant
        ("别", "at-risk", at(9, 30), None),
    ]
    with sessions() as session, session.begin():
        for name, segment, entered, left in stays:
            session.add(
                SegmentMembership(
                    customer_id=ids[name],
                    segment=segment,
                    family="lifecycle",
                    entered_at=entered,
                    left_at=left,
                )
            )
    shop.order(ids["中"], at(10, 40), seq=2)  # the goal, before the care
    (ledger, enrollments), _report = compared(
        sessions, tmp_path, journey(tmp_path, SEGMENT), at(9, 0), at(13, 50)
    )
    entered = {(row[0], row[3], row[4]) for row in enrollments}
    assert entered == {
        (ids["早"], at(9, 17), at(9, 17)),
        (ids["中"], at(10, 3), at(10, 3)),
        (ids["晚"], at(11, 41), at(11, 41)),
        (ids["再"], at(9, 2), at(9, 2)),
        (ids["再"], at(10, 31), at(11, 3)),
    }
    assert [row[5] for row in enrollments if row[0] == ids["中"]] == [at(10, 40)]
    cares = {row[0]: row[6] for row in ledger if row[1] == "recall-care" and row[2] == "sent"}
    assert cares[ids["晚"]] == at(13, 41)


# An SMS welcome and an SMS two hours later: a reply of an opt-out word in between
# suppresses SMS before the later one (siyu.engine.optouts); the WeCom care still goes.
REPLIES = """
journey: minute-moments
timezone: Asia/Shanghai
entry: {event: order_paid}
steps:
  - {id: welcome, send: sms, template: day14_coupon.j2}
  - {id: coupon, at: 2h, send: sms, template: day14_coupon.j2}
  - {id: care, at: 150m, send: wecom, template: day3_care.j2}
"""


def test_sms_replies_that_opt_out(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    replies = {  # name: (first order, the reply and its moment)
        "T": (at(9, 10), "T", at(10, 7)),
        "退订": (at(9, 20), " 退订 ", at(11, 20)),  # at the coupon's own due moment
        "chat": (at(9, 25), "好的谢谢", at(10, 0)),  # not an opt-out word
        "after": (at(9, 30), "td", at(11, 31)),  # a minute after the coupon went
        "before-start": (at(9, 40), "T", at(8, 30)),  # applied at the first tick
    }
    ids = {name: shop.customer(name) for name in replies}
    outsider = shop.customer("outsider")  # replies, never enters
    with sessions() as session, session.begin():
        for name, (ordered, text, replied) in replies.items():
            shop.order(ids[name], ordered, seq=1)
            session.add(
                Event(
                    customer_id=ids[name],
                    name="sms_reply",
                    occurred_at=replied,
                    properties={"text": text},
                )
            )
        session.add(
            Event(
                customer_id=outsider,
                name="sms_reply",
                occurred_at=at(10, 13),
                properties={"text": "T"},
            )
        )
    spec = journey(tmp_path, REPLIES)
    (ledger, _enrollments), _report = compared(sessions, tmp_path, spec, at(9, 0), at(12, 10))
    coupons = {row[0]: row[2:4] for row in ledger if row[1] == "coupon"}
    assert coupons == {
        ids["T"]: ("skipped", "suppressed"),
        ids["退订"]: ("skipped", "suppressed"),
        ids["chat"]: ("sent", None),
        ids["after"]: ("sent", None),
        ids["before-start"]: ("skipped", "suppressed"),
    }
    assert {row[0] for row in ledger if row[1] == "care" and row[2] == "sent"} == set(ids.values())
    # the suppressions are written at the replies' own moments, as ticking every minute does
    expected = suppressions(f"sqlite:///{tmp_path / 'minutes.db'}")
    assert suppressions(f"sqlite:///{tmp_path / 'moments-None.db'}") == expected
    assert (outsider, "sms", at(10, 13)) in expected


def suppressions(url: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.execute(
                select(Suppression.customer_id, Suppression.channel, Suppression.created_at)
                .order_by(Suppression.customer_id, Suppression.channel)
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


# Orders from up to 2 hours before the start enter at its first tick; the welcome expires an
# hour after entry; a repurchase exits.
LOOKBACK = """
journey: minute-moments
timezone: Asia/Shanghai
entry: {event: order_paid, where: "order_seq = 1", lookback: 2h}
exit_when: {event: order_paid, where: "order_seq >= 2"}
goal: {event: order_paid, where: "order_seq >= 2", within: 1d}
steps:
  - {id: welcome, within: 1h, send: wecom_group_invite, template: join_group.j2}
  - {id: care, at: 3h, send: wecom, template: day3_care.j2}
"""


def test_an_entry_lookback_before_the_start(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    orders = {  # name: first order, repurchase
        "too-early": (at(6, 59), None),  # a minute outside the lookback
        "edge": (at(7, 0), None),  # exactly at start - lookback: counts
        "early": (at(8, 10), at(8, 30)),  # exits at the first tick
        "late-exit": (at(8, 20), at(10, 5)),
        "at-start": (at(9, 0), None),  # exactly at the first tick's moment: counts
        "after": (at(9, 30), None),
    }
    ids = {name: shop.customer(name) for name in orders}
    for name, (first, again) in orders.items():
        shop.order(ids[name], first, seq=1)
        if again is not None:
            shop.order(ids[name], again, seq=2)
    (ledger, enrollments), report = compared(
        sessions, tmp_path, journey(tmp_path, LOOKBACK), at(9, 0), at(12, 30)
    )
    entered = {row[0]: (row[2], row[3], row[4]) for row in enrollments}
    assert entered == {
        ids["edge"]: ("completed", at(7, 0), at(9, 0)),
        ids["early"]: ("exited", at(8, 10), at(9, 0)),
        ids["late-exit"]: ("exited", at(8, 20), at(9, 0)),
        ids["at-start"]: ("completed", at(9, 0), at(9, 0)),
        ids["after"]: ("completed", at(9, 30), at(9, 30)),
    }
    rows = {(row[0], row[1]): row[2:4] for row in ledger}
    assert rows[(ids["edge"], "welcome")] == ("skipped", "expired")
    assert rows[(ids["late-exit"], "welcome")] == ("sent", None)
    assert rows[(ids["edge"], "care")] == ("sent", None)  # due 10:00
    assert (ids["late-exit"], "care") not in rows  # exited at 10:05, before 11:20
    assert report.moments[0] == at(9, 0)


# A second order while the first one's enrollment is inside (re-entry `always`) enters a
# minute after that enrollment ends, if it is still within the engine's window for late
# events then (EngineContext.late_events: 7 days; an hour here, for a short span).
REENTRY = """
journey: minute-moments
timezone: Asia/Shanghai
entry: {event: order_paid, reentry: always}
steps:
  - {id: welcome, send: wecom_group_invite, template: join_group.j2}
  - {id: care, at: 2h, send: wecom, template: day3_care.j2}
"""


def test_a_blocked_entry_enters_within_the_late_events_window_only(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = timedelta(hours=1)
    monkeypatch.setenv("SIYU_LATE_EVENTS_HOURS", "1")  # the backtest's, as the live engine's
    orders = {  # name: the orders; the first enrollment ends 2 hours after the first
        "stale": (at(9, 10), at(9, 20)),  # ends 11:10: the second is 1h50 old at 11:11
        "fresh": (at(11, 20), at(12, 40)),  # ends 13:20: the second is 41 minutes old
    }
    ids = {name: shop.customer(name) for name in orders}
    for name, placed in orders.items():
        for seq, paid in enumerate(placed, 1):
            shop.order(ids[name], paid, seq=seq)
    (_ledger, enrollments), _report = compared(
        sessions, tmp_path, journey(tmp_path, REENTRY), at(9, 0), at(13, 50), late
    )
    entered = [(row[0], row[3], row[4]) for row in enrollments]
    assert entered == [
        (ids["stale"], at(9, 10), at(9, 10)),
        (ids["fresh"], at(11, 20), at(11, 20)),
        (ids["fresh"], at(12, 40), at(13, 21)),
    ]
