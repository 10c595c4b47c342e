"""Customers of one batch into the database: the customer row (matched on external_id), the
identities it is reached by (a mobile, an openid, ...; each held by one customer only), and
its marketing consent.

An identity another customer holds makes the row bad. "Holds" is as of the row's place in the
file: a customer earlier in the file who changed their mobile has released the old one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.orm import Session

from siyu.importer.batch import (
    Row,
    Target,
    insert_new,
    insert_rows,
    rows_where,
    update_rows,
)
from siyu.preview.masking import mask_value
from siyu.storage.consent_changes import consent_change, record_changes
from siyu.storage.models import IDENTITY_KINDS, ChannelIdentity, Consent, Customer

# The customers table's columns an import may set (besides external_id).
COLUMNS = ("name", "gender", "city", "member_level", "timezone", "birthday", "created_at")
_CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
_IDENTITIES: Table = ChannelIdentity.__table__  # type: ignore[assignment]
_CONSENTS: Table = Consent.__table__  # type: ignore[assignment]
_DEFAULT_ZONE = Customer.timezone.default.arg
# After every problem a cell's parse found: the database's findings come last.
IDENTITY_RANK = 10_000

# A customer: their id, or ("new", external_id) before the insert gives them one.
Key = int | tuple[str, str]


def load_customers(target: Target, rows: list[Row]) -> list[str | None]:
    """Check and write a batch; per row "inserted", "updated", "unchanged", or None (the row
    is bad)."""
    session, now = target.session, target.now
    current = {
        found[0]: (found[1], dict(zip(COLUMNS, found[2:], strict=True)))
        for found in rows_where(
            session,
            Customer.external_id,
            (r.values["external_id"] for r in rows if "external_id" in r.values),
            Customer.external_id,
            Customer.id,
            *(_CUSTOMERS.c[name] for name in COLUMNS),
        )
    }
    ids = {external_id: id_ for external_id, (id_, _) in current.items()}
    existing = set(ids)
    claims = _check_identities(session, rows, ids)
    good = [row for row in rows if not row.bad]
    new = [row for row in good if row.values["external_id"] not in ids]
    old = [row for row in good if row.values["external_id"] in ids]
    ids.update(_insert(session, new, now))
    changed = []  # a re-import of a full export changes few customers: only those are written
    for row in old:
        id_, before = current[row.values["external_id"]]
        wanted = _columns(row.values)
        if any(before[name] != value for name, value in wanted.items()):
            changed.append({"id": id_, **wanted})
    update_rows(session, _CUSTOMERS, changed)
    touched = {row["id"] for row in changed}
    touched |= _write_identities(session, claims, ids, {ids[r.values["external_id"]] for r in old})
    touched |= _write_consents(session, good, ids, now)
    outcomes: list[str | None] = []
    for row in rows:
        external_id = row.values.get("external_id")
        if row.bad:
            outcomes.append(None)
        elif external_id not in existing:
            outcomes.append("inserted")
        else:
            outcomes.append("updated" if ids[external_id] in touched else "unchanged")
    return outcomes


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in COLUMNS if k in values}


def _key(row: Row, ids: dict[str, int]) -> Key:
    external_id = row.values.get("external_id", "")
    return ids.get(external_id) or ("new", external_id)


def _check_identities(
    session: Session, rows: list[Row], ids: dict[str, int]
) -> list[tuple[Key, str, str]]:
    """Mark the rows naming an identity another customer holds; returns the identities the
    good rows set, as (customer, kind, value) in file order."""
    wanted: dict[str, set[str]] = {}
    for row in rows:
        for kind in IDENTITY_KINDS:
            if kind in row.values:
                wanted.setdefault(kind, set()).add(row.values[kind])
    if not wanted:
        return []
    owner: dict[tuple[str, str], Key | None] = {}
    for kind, values in wanted.items():
        for value, holder in rows_where(
            session,
            ChannelIdentity.value,
            values,
            ChannelIdentity.value,
            ChannelIdentity.customer_id,
            also=ChannelIdentity.kind == kind,
        ):
            owner[(kind, value)] = holder
    # what the batch's known customers hold now, so a change releases the old value
    held: dict[tuple[Key, str], str] = {}
    for customer, kind, value in rows_where(
        session,
        ChannelIdentity.customer_id,
        ids.values(),
        ChannelIdentity.customer_id,
        ChannelIdentity.kind,
        ChannelIdentity.value,
    ):
        held[(customer, kind)] = value
    claims: list[tuple[Key, str, str]] = []
    for row in rows:
        key = _key(row, ids)
        named = [(kind, row.values[kind]) for kind in IDENTITY_KINDS if kind in row.values]
        for kind, value in named:
            holder = owner.get((kind, value))
            if holder is not None and holder != key:
                row.problem(
                    IDENTITY_RANK,
                    f"{kind} {mask_value(kind, value)} already belongs to another customer",
                )
        if row.bad:
            continue
        for kind, value in named:
            previous = held.get((key, kind))
            if previous == value:
                continue  # held already: nothing to write
            if previous is not None:
                owner[(kind, previous)] = None
            owner[(kind, value)] = key
            held[(key, kind)] = value
            claims.append((key, kind, value))
    return claims


def _insert(session: Session, rows: list[Row], now: datetime) -> dict[str, int]:
    """New customers, every row with the same columns (a table-wide default for a value the
    row leaves out); their ids by external_id."""
    if not rows:
        return {}
    present = [c for c in COLUMNS if any(c in r.values for r in rows)]
    defaults: dict[str, Any] = {"timezone": _DEFAULT_ZONE, "created_at": now}
    records = [
        {
            "external_id": r.values["external_id"],
            **{c: r.values.get(c, defaults.get(c)) for c in present},
            **{c: v for c, v in defaults.items() if c not in present},
        }
        for r in rows
    ]
    inserted = insert_new(session, _CUSTOMERS, records, ("external_id", "id"))
    return {external_id: id_ for external_id, id_ in inserted}


def _write_identities(
    session: Session,
    claims: list[tuple[Key, str, str]],
    ids: dict[str, int],
    known: set[int],
) -> set[int]:
    """Replace each claimed (customer, kind)'s identity; released values go first, so a
    value one customer left and another took in the same batch moves. Returns the customers
    whose identities changed."""
    if not claims:
        return set()
    final: dict[tuple[int, str], str] = {}
    for key, kind, value in claims:
        customer = key if isinstance(key, int) else ids[key[1]]
        final[(customer, kind)] = value
    replaced = [{"c": c, "k": k} for (c, k) in final if c in known]
    if replaced:
        session.connection().execute(
            delete(_IDENTITIES).where(
                _IDENTITIES.c.customer_id == bindparam("c"), _IDENTITIES.c.kind == bindparam("k")
            ),
            replaced,
        )
    insert_rows(
        session,
        _IDENTITIES,
        [{"customer_id": c, "kind": k, "value": v} for (c, k), v in final.items()],
    )
    return {customer for customer, _ in final}


def _write_consents(
    session: Session, rows: list[Row], ids: dict[str, int], now: datetime
) -> set[int]:
    """The marketing consent each row gives: a new row, or the changed ones updated, dated by
    the row's `consent_at` if the file gives one, else `now`; each change is recorded in the
    consent history (siyu/storage/consent_changes.py). Returns the customers whose consent
    changed."""
    given = {
        ids[r.values["external_id"]]: (r.values["consent"], r.values.get("consent_at"))
        for r in rows
        if "consent" in r.values
    }
    if not given:
        return set()
    current = {
        customer: (id_, granted, updated_at)
        for customer, id_, granted, updated_at in rows_where(
            session,
            Consent.customer_id,
            given,
            Consent.customer_id,
            Consent.id,
            Consent.granted,
            Consent.updated_at,
            also=Consent.purpose == "marketing",
        )
    }
    changed = {
        c: (g, at or now) for c, (g, at) in given.items() if c not in current or current[c][1] != g
    }
    insert_rows(
        session,
        _CONSENTS,
        [
            {
                "customer_id": c,
                "purpose": "marketing",
                "granted": g,
                "source": "import",
                "updated_at": at,
            }
            for c, (g, at) in changed.items()
            if c not in current
        ],
    )
    update_rows(
        session,
        _CONSENTS,
        [
            {"id": current[c][0], "granted": g, "source": "import", "updated_at": at}
            for c, (g, at) in changed.items()
            if c in current
        ],
    )
    record_changes(
        session.connection(),
        [
            consent_change(
                c, "marketing", current[c][1:] if c in current else None, g, at, "import"
            )
            for c, (g, at) in changed.items()
            # a first consent without its moment: the data dates no change (its updated_at
            # says since when it is known)
            if c in current or given[c][1] is not None
        ],
    )
    return set(changed)
