"""A backtest of a journey whose SQL uses `current_date` (the tick's date in the journey's zone)
gives what the live engine ticking every minute gives: what it matches changes at each local
midnight, which is a moment of its own, and the events read through such a `where:` are all
moments (siyu.simulate.moments). Minute ticks over three hours around a Shanghai midnight keep
the reference cheap (~180 ticks); the history lives on the suite's database (PostgreSQL on
its PostgreSQL run), both runs on SQLite copies of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.language.where_clause import tick_date
from siyu.policies import Policies
from siyu.simulate.moments import midnights
from siyu.simulate.runner import SimulationSettings, simulate
from siyu.storage.models import Customer
from tests.conftest import Shop
from tests.tools.minute_ticks import every_minute, state
from tests.tools.project_files import ROOT
from tests.tools.test_simulate_moments import at, spec

# `date(occurred_at)` is an order's stored (UTC) date, 8 hours behind Shanghai's: an order
# enters from the Shanghai day after that date on, at once when paid before 08:00, else at
# the next midnight; a repurchase exits the same way. (The name is the one `state` reads.)
JOURNEY = """
journey: minute-moments
timezone: Asia/Shanghai
quiet_hours: null
entry:
  event: order_paid
  where: "order_seq = 1 AND date(occurred_at) < current_date"
  lookback: 1d
exit_when: {event: order_paid, where: "order_seq >= 2 AND date(occurred_at) < current_date"}
steps:
  - {id: welcome, at: 0h, send: sms, template: day14_coupon.j2}
  - {id: birthday, send: wecom, template: day3_care.j2,
     if: {customer: "birthday = current_date"}}
  - {id: later, at: 17h45m, send: sms, template: day14_coupon.j2}
"""
START, END = at(0, 22, 30), at(1, 1, 30)  # Shanghai's midnight at(1, 0, 0) in between
POLICIES = Policies()


def history(shop: Shop) -> dict[str, int]:
    buyers: dict[str, int] = {}
    for name, first, again, birthday in (
        # enters at the start (lookback); its repurchase exits it at midnight, before
        # `later` is due at 00:45
        ("dawn", at(0, 7, 0), at(0, 22, 50), None),
        ("day", at(0, 10, 0), None, date(2026, 11, 3)),  # enters at midnight, its birthday
        ("evening", at(0, 23, 10), None, date(2026, 11, 2)),  # at midnight, a day late
        ("after-midnight", at(1, 0, 40), None, None),  # stored date 2 Nov: enters at once
    ):
        buyers[name] = shop.customer(name)
        shop.order(buyers[name], first, seq=1)
        if again is not None:
            shop.order(buyers[name], again, seq=2)
        if birthday is not None:
            with shop.sessions() as session, session.begin():
                session.execute(
                    update(Customer).where(Customer.id == buyers[name]).values(birthday=birthday)
                )
    return buyers


def test_a_backtest_with_current_date_gives_what_ticking_every_minute_gives(
    database_url: str, sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    buyers = history(shop)
    journey = spec(tmp_path, JOURNEY)
    reference = tmp_path / "minutes.db"
    every_minute(database_url, reference, journey, START, END, policies=POLICIES)
    kept = tmp_path / "moments.db"
    report = simulate(
        journey, database_url, ROOT / "templates", STANDARD_CHANNELS,
        SimulationSettings(START, END), policies=POLICIES, keep=kept,
    )  # fmt: skip
    expected = state(f"sqlite:///{reference}")
    assert state(f"sqlite:///{kept}") == expected
    assert at(1, 0, 0) in report.moments and report.ticks < 15

    # the data has what was meant to be compared
    ledger, enrollments = expected
    rows = {(row[0], row[1]): row[2:4] for row in ledger}
    enrolled_at = {row[0]: row[4] for row in enrollments}
    assert enrolled_at == {
        buyers["dawn"]: START,
        buyers["day"]: at(1, 0, 0),
        buyers["evening"]: at(1, 0, 0),
        buyers["after-midnight"]: at(1, 0, 40),
    }
    dawn = next(row for row in enrollments if row[0] == buyers["dawn"])
    assert dawn[2] == "exited"  # at midnight: `later`, due at 00:45, has no row
    assert (buyers["dawn"], "later") not in rows
    assert rows[(buyers["day"], "birthday")] == ("sent", None)
    assert rows[(buyers["evening"], "birthday")] == ("skipped", "condition_false")


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Asia/Shanghai", datetime(2026, 11, 1, 9, 7, tzinfo=UTC)),
        # Santiago's clocks skip from 00:00 to 01:00 on 6 September 2026 and go back from
        # 24:00 to 23:00 on 4 April: the date changes once a day all the same
        ("America/Santiago", datetime(2026, 9, 4, 12, tzinfo=UTC)),
        ("America/Santiago", datetime(2026, 4, 3, 12, tzinfo=UTC)),
    ],
)
def test_the_midnights_are_every_minute_at_which_the_date_changes(
    zone: str, start: datetime
) -> None:
    """Over several days, minute by minute: the moments added for current_date are exactly
    the minutes whose tick sees another date than the minute before."""
    end = start + timedelta(days=3)
    changes = []
    minute = start + timedelta(minutes=1)
    while minute <= end:
        if tick_date(minute, zone) != tick_date(minute - timedelta(minutes=1), zone):
            changes.append(minute)
        minute += timedelta(minutes=1)
    assert midnights(zone, start, end) == changes
    assert len(changes) == 3
