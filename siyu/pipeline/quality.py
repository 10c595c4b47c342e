"""Data-quality checks of the 02:00 cleaning stage, over the brand's tables:

    completeness   required values present (customer names, an order's customer, time and
                   amount; an event's name and time): a missing value is a failure
    uniqueness     no order or event exported twice under two ids (same customer, time
                   and amount / name): a duplicate is a failure
    missing rate   optional fields (city, gender, birthday, member level, a mobile number,
                   marketing consent): more than 5 % missing is a warning

Failures stop the pipeline (the journeys of the day do not run on broken data); warnings are
reported and let it go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import distinct, func, or_, select
from sqlalchemy.orm import Session

from siyu.storage.models import ChannelIdentity, Consent, Customer, Event, Order

MISSING_WARN = 0.05


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # completeness | uniqueness | missing_rate
    value: float  # count of bad rows, or the missing share
    outcome: str  # ok | warn | fail
    detail: str

    def as_row(self) -> dict[str, Any]:
        shown = f"{self.value:.1%}" if self.kind == "missing_rate" else f"{self.value:g}"
        return {
            "check": self.name,
            "kind": self.kind,
            "value": shown,
            "outcome": self.outcome,
            "detail": self.detail,
        }


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def _complete(session: Session, name: str, table: Any, *missing: Any) -> Check:
    bad = _count(session, select(func.count()).select_from(table).where(or_(*missing)))
    return Check(name, "completeness", bad, "fail" if bad else "ok", f"{bad} rows missing it")


def _duplicates(session: Session, name: str, *columns: Any) -> Check:
    groups = (select(*columns).group_by(*columns).having(func.count() > 1)).subquery()
    bad = _count(session, select(func.count()).select_from(groups))
    return Check(name, "uniqueness", bad, "fail" if bad else "ok", f"{bad} duplicated values")


def _missing(session: Session, name: str, total: int, present: int, threshold: float) -> Check:
    share = 1 - present / total if total else 0.0
    outcome = "warn" if share > threshold else "ok"
    return Check(name, "missing_rate", share, outcome, f"{total - present} of {total} missing")


def run_checks(session: Session, missing_warn: float = MISSING_WARN) -> list[Check]:
    customers = _count(session, select(func.count()).select_from(Customer))

    def customers_with(*where: Any) -> int:
        return _count(session, select(func.count()).select_from(Customer).where(*where))

    def customers_having(query: Any) -> int:
        return _count(session, select(func.count(distinct(query.c.customer_id))))

    mobiles = select(ChannelIdentity.customer_id).where(ChannelIdentity.kind == "mobile")
    consents = select(Consent.customer_id).where(Consent.purpose == "marketing")
    return [
        _complete(session, "customer name", Customer, Customer.name.is_(None), Customer.name == ""),
        _complete(
            session,
            "order customer, time, amount",
            Order,
            Order.customer_id.is_(None),
            Order.paid_at.is_(None),
            Order.amount.is_(None),
        ),
        _complete(
            session, "event name and time", Event, Event.name == "", Event.occurred_at.is_(None)
        ),
        # CRM ids, order numbers and addresses are unique by constraint; what slips through
        # is the same fact exported twice under two ids
        _duplicates(
            session,
            "order (customer, paid at, amount)",
            Order.customer_id,
            Order.paid_at,
            Order.amount,
        ),
        _duplicates(
            session,
            "event (customer, name, time)",
            Event.customer_id,
            Event.name,
            Event.occurred_at,
        ),
        _missing(
            session, "city", customers, customers_with(Customer.city.is_not(None)), missing_warn
        ),
        _missing(
            session, "gender", customers, customers_with(Customer.gender.is_not(None)), missing_warn
        ),
        _missing(
            session,
            "birthday",
            customers,
            customers_with(Customer.birthday.is_not(None)),
            missing_warn,
        ),
        _missing(
            session,
            "member level",
            customers,
            customers_with(Customer.member_level.is_not(None)),
            missing_warn,
        ),
        _missing(
            session, "mobile number", customers, customers_having(mobiles.subquery()), missing_warn
        ),
        _missing(
            session,
            "marketing consent",
            customers,
            customers_having(consents.subquery()),
            missing_warn,
        ),
    ]
