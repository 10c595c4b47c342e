"""A backtest ticks at the moments something can happen (siyu.simulate.moments), and its
result is the one ticking every minute gives: on data whose events fall on whole minutes,
the ledger and the enrollments are equal column for column, times included, and the same
whether `every` asks for a tick each hour or each day besides."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.language.channel_kinds import STANDARD_CHANNELS
from siyu.language.loader import Catalog, load_journey
from siyu.language.spec import JourneySpec
from siyu.policies import Cap, Policies
from siyu.simulate.runner import SimulationSettings, simulate
from siyu.storage.engine import make_engine, make_sessionmaker
from siyu.storage.models import Delivery
from tests.conftest import DAY0, Shop
from tests.tools.minute_ticks import every_minute, state
from tests.tools.project_files import ROOT

# A welcome at entry, a care message 3 hours later (never after 5 hours), one 20 hours later;
# quiet hours 20:00-08:00 (Asia/Shanghai); a repurchase exits.
JOURNEY = """
journey: minute-moments
timezone: Asia/Shanghai
quiet_hours: "20:00-08:00"
entry: {event: order_paid, where: "order_seq = 1"}
exit_when: {event: order_paid, where: "order_seq >= 2"}
goal: {event: order_paid, where: "order_seq >= 2", within: 2d}
steps:
  - {id: welcome, at: 0h, send: wecom_group_invite, template: join_group.j2}
  - {id: care, at: 3h, within: 5h, send: wecom, template: day3_care.j2}
  - {id: next-morning, at: 20h, send: sms, template: day14_coupon.j2}
"""
# One marketing message per 4 hours: the care message 3 hours after the welcome waits an hour.
POLICIES = Policies(caps=[Cap(name="one-in-4h", channels="all", max=1, per="4h")])
START = DAY0 + timedelta(hours=9)  # 09:00 on day 0, Shanghai
END = DAY0 + timedelta(days=1, hours=8, minutes=5)  # just past the end of the night
# A minute's ticks over 23 hours are slow on a loaded machine (about 0.1 s each).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"  # simulate copies a SQLite file


def at(day: int, hour: int, minute: int) -> datetime:
    """A whole minute of Shanghai's wall clock on day `day`, as UTC."""
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


# Every order enters, again and again: a repurchase exits the customer, and the same order
# enters them again at the next tick (the enrollment it was blocking has ended).
REENTERING = JOURNEY.replace(
    'entry: {event: order_paid, where: "order_seq = 1"}',
    "entry: {event: order_paid, reentry: always}",
)


def spec(tmp_path: Path, text: str) -> JourneySpec:
    path = tmp_path / "minute_moments.yaml"
    path.write_text(text, encoding="utf-8")
    return load_journey(path, Catalog(set(STANDARD_CHANNELS), ROOT / "templates"))


def history(shop: Shop) -> dict[str, int]:
    """First orders at odd minutes of day and night, repurchases a minute either side of a
    care message's due time and exactly on it."""
    buyers: dict[str, int] = {}

    def buyer(name: str, first: datetime, again: datetime | None = None, **kw: bool) -> None:
        buyers[name] = shop.customer(name, **kw)
        shop.order(buyers[name], first, seq=1)
        if again is not None:
            shop.order(buyers[name], again, seq=2)

    buyer("capped", at(0, 10, 7))  # care due 13:07, the cap frees it at 14:07; 20h: night
    buyer("no-consent", at(0, 10, 7), consent=False)
    buyer("evening", at(0, 17, 33))  # care due 20:33: quiet until 08:00, past its 22:33
    buyer("late", at(0, 19, 58))  # welcome just before quiet hours
    buyer("night", at(0, 23, 41))  # welcome waits for 08:00
    buyer("exit-before", at(0, 11, 12), at(0, 14, 11))  # care would be due at 14:12
    buyer("exit-after", at(0, 11, 12), at(0, 14, 13))  # care held by the cap, then the exit
    buyer("exit-on-time", at(0, 12, 0), at(0, 15, 0))  # the repurchase at the due moment
    buyer("dawn", at(1, 7, 30), at(1, 7, 50))  # the welcome waits for 08:00, the exit first
    buyer("before-start", at(0, 8, 59))  # before the journey is switched on: not an entrant
    return buyers


@pytest.mark.parametrize("text", [JOURNEY, REENTERING], ids=["first-order", "re-entering"])
def test_the_moments_give_what_ticking_every_minute_gives(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path, text: str
) -> None:
    buyers = history(shop)
    journey = spec(tmp_path, text)
    url = str(sessions.kw["bind"].url)
    reference = tmp_path / "minutes.db"
    every_minute(url, reference, journey, START, END, POLICIES)

    runs = {}
    for every in (None, timedelta(hours=1), timedelta(days=1)):
        kept = tmp_path / f"moments-{every}.db"
        report = simulate(
            journey, url, ROOT / "templates", STANDARD_CHANNELS,
            SimulationSettings(START, END, every), policies=POLICIES, keep=kept,
        )  # fmt: skip
        runs[every] = (report, state(f"sqlite:///{kept}"))
    expected = state(f"sqlite:///{reference}")
    for every, (_report, found) in runs.items():
        assert found == expected, f"every={every}"

    moments, hourly = runs[None][0], runs[timedelta(hours=1)][0]
    assert moments.ticks < 80 < 23 * 60  # far fewer than the minutes
    assert hourly.ticks > 23  # the hours besides the moments, to the same result
    # the data has what was meant to be compared: the cap's wait, quiet hours, the deadline,
    # exits a minute either side of a due time
    ledger, enrollments = expected
    rows = {(row[0], row[1]): row for row in ledger}  # a customer's last enrollment's rows
    capped = rows[(buyers["capped"], "care")]
    assert (capped[2], capped[5], capped[6]) == ("sent", at(0, 13, 7), at(0, 14, 7))
    night = rows[(buyers["night"], "welcome")]
    assert (night[2], night[6]) == ("sent", at(1, 8, 0))
    assert rows[(buyers["evening"], "care")][2:4] == ("skipped", "expired")
    morning = rows[(buyers["capped"], "next-morning")]  # due 06:07, sent when quiet hours end
    assert (morning[2], morning[5], morning[6]) == ("sent", at(1, 6, 7), at(1, 8, 0))
    entered = [row[0] for row in enrollments]
    assert buyers["before-start"] not in entered
    assert sum(1 for row in enrollments if row[5] is not None) == 4  # the goals
    if text == JOURNEY:
        assert (buyers["exit-before"], "care") not in rows
        assert rows[(buyers["exit-after"], "care")][2:4] == ("skipped", "exited")
        assert rows[(buyers["dawn"], "welcome")][2:4] == ("skipped", "exited")
    else:  # the repurchase enters again a minute after it exits
        again = [row for row in enrollments if row[0] == buyers["exit-after"]]
        assert [row[2] for row in again] == ["exited", "active"]
        assert again[1][3:5] == (at(0, 14, 13), at(0, 14, 14))  # entered, enrolled


def test_an_anchored_steps_moment_is_its_dates(
    sessions: sessionmaker[Session], shop: Shop, tmp_path: Path
) -> None:
    """A step due from a date column (birthday-privilege: 10:00 on the birthday, in the
    customer's zone) gets its tick there: the moments alone give the ledger that ticks every
    hour besides give, and each greeting goes at 10:00."""
    from sqlalchemy import update

    from siyu.storage.models import Customer

    born = {shop.customer(name): day for name, day in (("甲", 1), ("乙", 2))}
    shop.customer("丙")  # no birthday: skipped for it
    with sessions() as session, session.begin():
        for customer_id, day in born.items():
            birthday = at(day, 0, 0).astimezone(ZoneInfo("Asia/Shanghai")).date()
            session.execute(
                update(Customer)
                .where(Customer.id == customer_id)
                .values(birthday=birthday.replace(year=1990))
            )
    journey = load_journey(
        ROOT / "journeys" / "birthday.yaml", Catalog(set(STANDARD_CHANNELS), ROOT / "templates")
    )
    url = str(sessions.kw["bind"].url)
    found = []
    for every in (None, timedelta(hours=1)):
        kept = tmp_path / f"birthday-{every}.db"
        simulate(
            journey, url, ROOT / "templates", STANDARD_CHANNELS,
            SimulationSettings(at(0, 9, 0), at(3, 9, 0), every), keep=kept,
        )  # fmt: skip
        engine = make_engine(f"sqlite:///{kept}")
        with make_sessionmaker(engine)() as session:
            found.append(
                session.execute(
                    select(
                        Delivery.customer_id,
                        Delivery.status,
                        Delivery.due_at,
                        Delivery.sent_at,
                        Delivery.updated_at,
                    ).order_by(Delivery.customer_id)
                ).all()  # fmt: skip
            )
        engine.dispose()
    assert found[0] == found[1]
    sent = {row[0]: row[3] for row in found[0] if row[1] == "sent"}
    assert sent == {customer_id: at(day, 10, 0) for customer_id, day in born.items()}
