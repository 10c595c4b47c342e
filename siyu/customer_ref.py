"""A customer named by a person: the numeric id (`42`) or the CRM's external id
(`CRM0000042`), the same way in every command."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from siyu.errors import ConfigError
from siyu.storage.models import Customer


def find_customer(session: Session, ref: str | int) -> Customer:
    """The customer whose external id is `ref`, else whose id is `ref`; ConfigError otherwise.

    The message repeats `ref` as typed: it is the user's own input, not personal data from
    the database (which is masked wherever it is shown)."""
    text = str(ref).strip()
    if not text:
        raise ConfigError("no customer given: write its id (42) or external id (CRM0000042)")
    number = int(text) if text.isdigit() and len(text) < 19 else None  # fits a BIGINT
    match = Customer.external_id == text
    if number is not None:
        match = or_(match, Customer.id == number)
    # An external id that looks like a number wins over an id only when it is exact.
    found = session.scalars(select(Customer).where(match)).all()
    if not found:
        raise ConfigError(f"no customer with id or external id '{text}'")
    for customer in found:
        if customer.external_id == text:
            return customer
    return found[0]
