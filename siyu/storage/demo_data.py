"""Deterministic demo data for a Chinese retail brand (悦享生活): customers with zh_CN names,
mobile numbers, WeCom external_userids and service-account openids (some missing), consents,
and ~60 days of orders in which first purchases, repurchases within 14 days and customers who
never come back all occur.

Same seed, same data: tests and the demo can count on exact figures.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from faker import Faker
from sqlalchemy import insert
from sqlalchemy.orm import Session

from siyu.storage.models import ChannelIdentity, Consent, Customer, Order

CATEGORIES = ("护肤", "彩妆", "母婴", "零食", "家居", "服饰", "个护", "茶饮")
STORES = ("天猫旗舰店", "小程序商城", "上海静安门店", "杭州湖滨门店", "抖音小店", "京东自营")
CITIES = ("上海", "杭州", "北京", "深圳", "广州", "成都", "南京", "武汉", "苏州", "西安")
# Hours of day (Asia/Shanghai) weighted like retail traffic: a lunch bump and an evening peak
# that runs into the quiet hours, so the demo shows deferrals.
HOUR_WEIGHTS = (1, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 8, 7, 5, 5, 5, 6, 7, 9, 10, 10, 8, 4)
SHANGHAI = timedelta(hours=8)


@dataclass(frozen=True)
class DemoSpec:
    customers: int = 5000
    days: int = 60
    seed: int = 20261123
    # Day 0 of the order history, midnight Asia/Shanghai.
    start: datetime = datetime(2026, 9, 1, tzinfo=UTC) - SHANGHAI
    # New customers whose first purchase lies in the future, spread evenly over
    # `arrival_window` after `start + days`: running journeys see them arrive as time passes.
    arrivals: int = 0
    arrival_window: timedelta = timedelta(hours=2)
    # Order times rounded down to this (a whole hour: an export with hours only); None: to
    # the second.
    resolution: timedelta | None = None


def around_now(now: datetime, customers: int = 5000, arrivals: int = 120) -> DemoSpec:
    """Demo data for a live walkthrough: `customers` with 60 days of history ending at `now`,
    and `arrivals` first purchases in the two hours after it, so every tick of a deployed
    journey finds new entrants."""
    days = 60
    return DemoSpec(
        customers=customers, days=days, start=now - timedelta(days=days), arrivals=arrivals
    )


@dataclass(frozen=True)
class DemoSummary:
    customers: int
    orders: int
    first_purchases: int
    repurchased_within_14d: int
    never_repurchased: int
    arrivals: int = 0
    arrivals_until: datetime | None = None


def _random_id(rng: random.Random, prefix: str, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(rng.choices(alphabet, k=length - len(prefix)))


def _moment(rng: random.Random, spec: DemoSpec, day: int) -> datetime:
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    return spec.start + timedelta(
        days=day, hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60)
    )


def generate(session: Session, spec: DemoSpec = DemoSpec()) -> DemoSummary:
    """Insert the demo data into an empty schema."""
    rng = random.Random(spec.seed)
    fake = Faker("zh_CN")
    fake.seed_instance(spec.seed)
    customers: list[dict[str, Any]] = []
    identities: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    mobiles: set[str] = set()
    repurchased_fast = never = 0

    for customer_id in range(1, spec.customers + 1):
        created = spec.start - timedelta(days=rng.randrange(0, 400))
        customers.append(
            dict(
                id=customer_id,
                external_id=f"CRM{customer_id:07d}",
                name=fake.name(),
                gender=rng.choice(("女", "女", "男")),
                city=rng.choice(CITIES),
                member_level=rng.choice(("普通", "普通", "银卡", "金卡")),
                birthday=date(
                    rng.randrange(1965, 2006), rng.randrange(1, 13), rng.randrange(1, 29)
                ),
                timezone="Asia/Shanghai",
                created_at=created,
            )
        )
        mobile = fake.phone_number()
        while mobile in mobiles:
            mobile = fake.phone_number()
        mobiles.add(mobile)
        reach = {
            "mobile": mobile if rng.random() < 0.95 else None,
            "wecom_external_userid": _random_id(rng, "wm", 32) if rng.random() < 0.72 else None,
            "wechat_openid": _random_id(rng, "o", 28) if rng.random() < 0.60 else None,
            "miniprogram_openid": _random_id(rng, "o", 28) if rng.random() < 0.45 else None,
            "email": f"user{customer_id}@example.com" if rng.random() < 0.30 else None,
        }
        identities += [
            dict(customer_id=customer_id, kind=k, value=v) for k, v in reach.items() if v
        ]
        roll = rng.random()
        if roll < 0.85:  # 85% consented to marketing, 5% withdrew, 10% never asked
            consents.append(
                dict(
                    customer_id=customer_id,
                    purpose="marketing",
                    granted=True,
                    source="会员注册",
                    updated_at=created,
                )
            )
        elif roll < 0.90:
            consents.append(
                dict(
                    customer_id=customer_id,
                    purpose="marketing",
                    granted=False,
                    source="回T退订",
                    updated_at=created,
                )
            )

        end = spec.start + timedelta(days=spec.days)
        if customer_id > spec.customers - spec.arrivals:  # arrives after the history
            step = spec.arrival_window / max(spec.arrivals, 1)
            times = [end + step * (customer_id - (spec.customers - spec.arrivals) - 0.5)]
        else:
            times = [min(_moment(rng, spec, rng.randrange(0, spec.days)), end)]
        pattern = rng.random()
        if pattern < 0.22:  # repurchase within 14 days
            times.append(times[0] + timedelta(days=rng.uniform(1, 13.9)))
            repurchased_fast += 1
        elif pattern < 0.40:  # repurchase later
            times.append(times[0] + timedelta(days=rng.uniform(15, 45)))
        else:
            never += 1
        if pattern < 0.40 and rng.random() < 0.3:
            times.append(times[-1] + timedelta(days=rng.uniform(3, 30)))
        if spec.resolution is not None:  # spec.start is a whole hour (midnight, Shanghai)
            times = [at - (at - spec.start) % spec.resolution for at in times]
        for seq, paid_at in enumerate(times, start=1):
            orders.append(
                dict(
                    order_no=f"YX{paid_at:%Y%m%d}{len(orders) + 1:07d}",
                    customer_id=customer_id,
                    paid_at=paid_at,
                    amount=Decimal(rng.randrange(3900, 89900)) / 100,
                    category=rng.choice(CATEGORIES),
                    order_seq=seq,
                    store=rng.choice(STORES),
                )
            )

    for table, rows in (
        (Customer, customers),
        (ChannelIdentity, identities),
        (Consent, consents),
        (Order, orders),
    ):
        for start in range(0, len(rows), 2000):
            session.execute(insert(table), rows[start : start + 2000])
    end = spec.start + timedelta(days=spec.days)
    return DemoSummary(
        len(customers),
        len(orders),
        len(customers),
        repurchased_fast,
        never,
        arrivals=spec.arrivals,
        arrivals_until=end + spec.arrival_window if spec.arrivals else None,
    )
