"""One customer's story for the studio: looked up by id, external id or masked mobile
(138****5678), with `siyu explain`'s timeline of decisions in every journey they met.

Read-only, and every personal value leaves here masked (siyu.preview.masking): the name,
the external id, each channel identity, and any of them inside explain's lines. What a person
typed is theirs and is repeated as typed (the page escapes it)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from siyu.customer_ref import find_customer
from siyu.engine.versions import spec_of
from siyu.errors import ConfigError
from siyu.language.spec import JourneySpec
from siyu.preview.masking import mask_id, mask_mobile, mask_name, mask_text, mask_value
from siyu.reports.explain import explain
from siyu.storage.engine import make_sessionmaker
from siyu.storage.models import ChannelIdentity, Customer, Enrollment, Journey
from siyu.studio.database import existing_database

# 138****5678: the first three and last four digits of a mobile, as every screen shows it
MASKED_MOBILE = re.compile(r"^(1\d{2})\*+(\d{4})$")

Problem = Literal["unknown", "no_database", "unreadable"]


@dataclass(frozen=True)
class Candidate:
    """One of several customers a masked mobile matches: enough to tell them apart."""

    id: int
    name: str
    mobiles: list[str]


@dataclass(frozen=True)
class JourneyStory:
    journey: str
    lines: list[str]  # explain's, masked


@dataclass(frozen=True)
class Story:
    id: int
    name: str
    external_id: str | None
    identities: list[tuple[str, str]]  # (kind, masked value)
    journeys: list[JourneyStory]


@dataclass(frozen=True)
class Lookup:
    """What a search found: one customer's story, several candidates, or a problem."""

    query: str
    story: Story | None = None
    candidates: list[Candidate] = field(default_factory=list)
    problem: Problem | None = None


def look_up(
    database_url: str | None,
    query: str,
    customer_id: int | None,
    now: datetime,
    lang: str = "en",
) -> Lookup:
    """`customer_id` (a candidate's link) names the customer exactly; `query` is what a
    person typed: an id, an external id or a masked mobile. `lang`: the timeline's language
    (siyu.reports.explain)."""
    engine = existing_database(database_url)
    if engine is None:
        return Lookup(query, problem="no_database")
    try:
        with make_sessionmaker(engine)() as session:
            return _look_up(session, query.strip(), customer_id, now, lang)
    except SQLAlchemyError:  # not migrated, unreachable: one line, never a traceback
        return Lookup(query, problem="unreadable")
    finally:
        engine.dispose()


def _look_up(
    session: Session, query: str, customer_id: int | None, now: datetime, lang: str
) -> Lookup:
    if customer_id is not None:
        if session.get(Customer, customer_id) is None:
            return Lookup(str(customer_id), problem="unknown")
        return Lookup(query, story=customer_story(session, customer_id, now, lang))
    masked = MASKED_MOBILE.match(query)
    if masked:
        ids = customers_by_masked_mobile(session, masked.group(1), masked.group(2))
        if len(ids) == 1:
            return Lookup(query, story=customer_story(session, ids[0], now, lang))
        if ids:
            return Lookup(query, candidates=[_candidate(session, i) for i in ids])
        return Lookup(query, problem="unknown")
    try:
        found = find_customer(session, query)
    except ConfigError:
        return Lookup(query, problem="unknown")
    return Lookup(query, story=customer_story(session, found.id, now, lang))


def customers_by_masked_mobile(session: Session, prefix: str, suffix: str) -> list[int]:
    """The customers with a mobile that masks to prefix****suffix, by id."""
    rows = session.execute(
        select(ChannelIdentity.customer_id, ChannelIdentity.value).where(
            ChannelIdentity.kind == "mobile", ChannelIdentity.value.like(f"{prefix}%{suffix}")
        )
    )
    wanted = f"{prefix}****{suffix}"
    return sorted({customer for customer, value in rows if mask_mobile(value) == wanted})


def _candidate(session: Session, customer_id: int) -> Candidate:
    customer = session.get(Customer, customer_id)
    assert customer is not None
    mobiles = session.scalars(
        select(ChannelIdentity.value).where(
            ChannelIdentity.customer_id == customer_id, ChannelIdentity.kind == "mobile"
        )
    )
    return Candidate(customer_id, mask_name(customer.name), [mask_mobile(m) for m in mobiles])


def customer_story(session: Session, customer_id: int, now: datetime, lang: str = "en") -> Story:
    """The customer, masked, and explain's timeline in each journey they entered, read
    against the versions the engine ran (the database's), not the files as edited since."""
    customer = session.get(Customer, customer_id)
    assert customer is not None
    identities = session.execute(
        select(ChannelIdentity.kind, ChannelIdentity.value)
        .where(ChannelIdentity.customer_id == customer_id)
        .order_by(ChannelIdentity.kind, ChannelIdentity.value)
    ).all()
    personal = [("name", customer.name), *((kind, value) for kind, value in identities)]
    if customer.external_id:
        personal.append(("external_id", customer.external_id))
    names = session.scalars(
        select(Enrollment.journey_name)
        .where(Enrollment.customer_id == customer_id)
        .group_by(Enrollment.journey_name)
        .order_by(func.min(Enrollment.entered_at))
    ).all()
    journeys = []
    for name in names:
        lines = explain(session, _last_known(session, name), customer_id, now, lang)
        journeys.append(JourneyStory(name, [_masked(line, personal) for line in lines]))
    return Story(
        id=customer_id,
        name=mask_name(customer.name),
        external_id=mask_id(customer.external_id) if customer.external_id else None,
        identities=[(kind, mask_value(kind, value)) for kind, value in identities],
        journeys=journeys,
    )


def _last_known(session: Session, name: str) -> JourneySpec:
    """The journey's latest version the database holds (explain reads an enrollment of an
    older one against that one's own spec)."""
    journey = session.scalars(
        select(Journey).where(Journey.name == name).order_by(Journey.id.desc()).limit(1)
    ).one()
    return spec_of(journey)


def _masked(text: str, personal: list[tuple[str, str]]) -> str:
    """`text` with each of the customer's personal values masked, the longest first (one
    value may contain another), and any mobile number."""
    for kind, value in sorted(personal, key=lambda kv: -len(kv[1])):
        text = mask_text(text, {kind: value})
    return mask_text(text)
