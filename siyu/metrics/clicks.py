"""`siyu clicks sync`: clicks recorded by the redirect endpoint become `link_clicked` events.

Why a pull: the redirect endpoint runs in the channel sandbox (or the brand's web server),
which must not hold database credentials; it only logs clicks. This sync reads that log
(`GET /_sandbox/clicks`), verifies each token's signature and inserts one event per click,
keyed by the click's id, so running it again inserts nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.metrics.links import BadLink, read_link_token
from siyu.storage.models import Customer, Event


@dataclass
class ClickSync:
    fetched: int = 0
    inserted: int = 0
    already: int = 0
    forged: int = 0  # bad signature or unknown customer: dropped


def fetch_clicks(base_url: str) -> list[dict[str, str]]:
    try:
        with httpx.Client(base_url=base_url, timeout=10, trust_env=False) as client:
            response = client.get("/_sandbox/clicks")
            response.raise_for_status()
    except httpx.HTTPError as error:
        raise ConfigError(f"cannot read clicks from {base_url}: {error}") from None
    return list(response.json()["clicks"])


def record_clicks(session: Session, clicks: list[dict[str, str]]) -> ClickSync:
    result = ClickSync(fetched=len(clicks))
    keys = [f"click:{c['id']}" for c in clicks]
    known = set(session.scalars(select(Event.external_id).where(Event.external_id.in_(keys))))
    customers = set(session.scalars(select(Customer.id)))
    for click, key in zip(clicks, keys, strict=True):
        if key in known:
            result.already += 1
            continue
        try:
            link = read_link_token(click["token"])
        except (BadLink, KeyError):
            result.forged += 1
            continue
        if link.customer_id not in customers:
            result.forged += 1
            continue
        session.add(
            Event(
                external_id=key,
                customer_id=link.customer_id,
                name="link_clicked",
                occurred_at=datetime.fromisoformat(click["at"]).astimezone(UTC),
                properties={
                    "journey": link.journey,
                    "step": link.step,
                    "variant": link.variant,
                    "url": link.url,
                },
            )
        )
        known.add(key)
        result.inserted += 1
    session.flush()
    return result
