"""Opt-outs that arrive as data take effect before the next send: an SMS reply of T / TD /
退订 (回T退订) suppresses SMS, an unsubscribe link suppresses its channel (or all)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.storage.consent_changes import suppression_change
from siyu.storage.models import ConsentChange, Customer, Event, Suppression
from siyu.unsubscribe import read_token


def suppress(session: Session, customer_id: int, channel: str, reason: str, now: datetime) -> bool:
    """Write a suppression unless one exists, with its change at `now` (the history a
    backtest reads: siyu/storage/consent_changes.py); True when written."""
    already = session.scalar(
        select(Suppression.id).where(
            Suppression.customer_id == customer_id, Suppression.channel == channel
        )
    )
    if already is not None:
        return False
    session.add(
        Suppression(customer_id=customer_id, channel=channel, reason=reason[:128], created_at=now)
    )
    session.add(ConsentChange(**suppression_change(customer_id, channel, now, reason)))
    session.flush()
    return True


def apply_sms_replies(session: Session, words: list[str], now: datetime) -> int:
    """Suppress SMS for every customer whose `sms_reply` event text is an opt-out word."""
    wanted = {w.strip().upper() for w in words}
    already = exists().where(
        Suppression.customer_id == Event.customer_id, Suppression.channel.in_(("sms", "*"))
    )
    written = 0
    for customer_id, properties in session.execute(
        select(Event.customer_id, Event.properties)
        .where(Event.name == "sms_reply", Event.occurred_at <= now, ~already)
        .order_by(Event.occurred_at)
    ):
        reply = str((properties or {}).get("text", "")).strip().upper()
        if reply in wanted and suppress(session, customer_id, "sms", f"sms reply '{reply}'", now):
            written += 1
    return written


def apply_unsubscribe(session: Session, token: str, now: datetime) -> tuple[int, str]:
    """Verify an unsubscribe link's token and suppress its channel; returns (customer, channel)."""
    customer_id, channel = read_token(token)
    if session.get(Customer, customer_id) is None:  # deleted since the link was sent
        raise ConfigError(
            f"the link's customer {customer_id} is no longer in the database; nothing to do"
        )
    suppress(session, customer_id, channel, "unsubscribe link", now)
    return customer_id, channel
