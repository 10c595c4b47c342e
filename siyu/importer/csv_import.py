"""Loads customers, orders and events from a CRM's CSV export with a mapping file.

Bad rows are reported as `file.csv:LINE: reason` and skipped; good rows load in one
transaction. A re-import updates instead of duplicating: customers match on external_id,
orders on order_no, events on external_id. order_seq is recomputed for every customer whose
orders changed, so `order_seq = 1` (a first purchase) stays true after a late import.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from db.models import IDENTITY_KINDS, ChannelIdentity, Consent, Customer, Event, Order
from db.sources import BEHAVIOUR_EVENTS
from siyu.errors import ConfigError
from siyu.importer.mapping import Mapping
from siyu.importer.parse import (
    BadValue,
    parse_amount,
    parse_consent,
    parse_date,
    parse_properties,
    parse_time,
)
from siyu.language.problems import did_you_mean
from siyu.preview.masking import mask_value

Progress = Callable[[int], None]


@dataclass
class ImportResult:
    file: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def report(self) -> list[str]:
        return [f"{self.file}:{line}: {reason}" for line, reason in self.bad]


def _rows(path: Path, mapping: Mapping) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, field → cell) per data row; header problems raise ConfigError."""
    try:
        handle = path.open(encoding=mapping.encoding, newline="")
    except OSError as error:
        raise ConfigError(f"{path}: cannot open ({error.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ConfigError(f"{path}: the file is empty") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{path}:1: not {mapping.encoding} text; set `encoding: gbk` in the mapping "
                "if the CRM exports GBK"
            ) from None
        index: dict[str, int] = {}
        for name, column in mapping.columns.items():
            if column not in header:
                raise ConfigError(
                    f"{path}:1: column '{column}' (for {name}) is not in the header"
                    f"{did_you_mean(column, header)} (columns: {', '.join(header)})"
                )
            index[name] = header.index(column)
        line = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise ConfigError(f"{path}:{line + 1}: not {mapping.encoding} text") from None
            except csv.Error as error:
                raise ConfigError(f"{path}:{reader.line_num}: broken CSV ({error})") from None
            first, line = line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            yield (
                first,
                {name: cells[i].strip() if i < len(cells) else "" for name, i in index.items()},
            )


def import_csv(
    session: Session, path: Path, mapping: Mapping, progress: Progress | None = None
) -> ImportResult:
    result = ImportResult(str(path), mapping.kind)
    loader = {"customers": _customer, "orders": _order, "events": _event}[mapping.kind]
    state = _State(session)
    for line, cells in _rows(path, mapping):
        result.rows += 1
        missing = [
            mapping.columns[f] for f in _required(mapping.kind) if not cells.get(f, "").strip()
        ]
        try:
            if missing:
                raise BadValue(f"empty {', '.join(missing)}")
            outcome = loader(state, cells, mapping)
        except BadValue as error:
            result.bad.append((line, str(error)))
            continue
        if outcome == "inserted":
            result.inserted += 1
        else:
            result.updated += 1
        if progress is not None:
            progress(result.rows)
    if mapping.kind == "orders":
        _renumber(session, state.order_customers)
    return result


def _required(kind: str) -> tuple[str, ...]:
    from siyu.importer.mapping import FIELDS

    return FIELDS[kind][0]


class _State:
    """Lookups kept for the whole file so each row costs no query for them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.customers: dict[str, int] = dict(
            session.execute(select(Customer.external_id, Customer.id)).tuples().all()  # type: ignore[arg-type]
        )
        self.order_customers: set[int] = set()
        self.now = datetime.now(UTC)

    def customer_id(self, external_id: str) -> int:
        found = self.customers.get(external_id)
        if found is None:
            raise BadValue(
                f"unknown customer '{mask_value('id', external_id)}': import customers first"
            )
        return found


def _customer(state: _State, cells: dict[str, str], mapping: Mapping) -> str:
    session = state.session
    values: dict[str, Any] = {"name": cells["name"]}
    for plain in ("gender", "city", "member_level", "timezone"):
        if cells.get(plain):
            values[plain] = cells[plain]
    if cells.get("birthday"):
        values["birthday"] = parse_date(cells["birthday"], mapping, mapping.columns["birthday"])
    if cells.get("created_at"):
        values["created_at"] = parse_time(
            cells["created_at"], mapping, mapping.columns["created_at"]
        )
    consent = (
        parse_consent(cells["consent"], mapping.columns["consent"])
        if cells.get("consent")
        else None
    )
    identities = {k: cells[k] for k in IDENTITY_KINDS if cells.get(k)}
    customer_id = state.customers.get(cells["external_id"])
    for kind, value in identities.items():
        owner = session.scalar(
            select(ChannelIdentity.customer_id).where(
                ChannelIdentity.kind == kind, ChannelIdentity.value == value
            )
        )
        if owner is not None and owner != customer_id:
            raise BadValue(f"{kind} {mask_value(kind, value)} already belongs to another customer")
    if customer_id is None:
        values.setdefault("created_at", state.now)
        customer = Customer(external_id=cells["external_id"], **values)
        session.add(customer)
        session.flush()
        customer_id = customer.id
        state.customers[cells["external_id"]] = customer_id
        outcome = "inserted"
    else:
        session.execute(update(Customer).where(Customer.id == customer_id).values(**values))
        outcome = "updated"
    for kind, value in identities.items():
        session.execute(
            delete(ChannelIdentity).where(
                ChannelIdentity.customer_id == customer_id, ChannelIdentity.kind == kind
            )
        )
        session.execute(
            insert(ChannelIdentity).values(customer_id=customer_id, kind=kind, value=value)
        )
    if consent is not None:
        _set_consent(session, customer_id, consent, state.now)
    return outcome


def _set_consent(session: Session, customer_id: int, granted: bool, now: datetime) -> None:
    current = session.scalar(
        select(Consent).where(Consent.customer_id == customer_id, Consent.purpose == "marketing")
    )
    if current is None:
        session.add(
            Consent(
                customer_id=customer_id,
                purpose="marketing",
                granted=granted,
                source="import",
                updated_at=now,
            )
        )
    elif current.granted != granted:
        current.granted, current.source, current.updated_at = granted, "import", now
    session.flush()


def _order(state: _State, cells: dict[str, str], mapping: Mapping) -> str:
    customer_id = state.customer_id(cells["customer"])
    values: dict[str, Any] = dict(
        customer_id=customer_id,
        paid_at=parse_time(cells["paid_at"], mapping, mapping.columns["paid_at"]),
        amount=parse_amount(cells["amount"], mapping.columns["amount"]),
        category=cells.get("category") or "未分类",
        store=cells.get("store") or None,
    )
    existing = state.session.execute(
        select(Order.id, Order.customer_id).where(Order.order_no == cells["order_no"])
    ).first()
    state.order_customers.add(customer_id)
    if existing is None:
        state.session.execute(
            insert(Order).values(order_no=cells["order_no"], order_seq=0, **values)
        )
        return "inserted"
    state.order_customers.add(existing[1])
    state.session.execute(update(Order).where(Order.id == existing[0]).values(**values))
    return "updated"


def _renumber(session: Session, customer_ids: set[int]) -> None:
    """order_seq = 1, 2, ... by payment time, for each customer whose orders changed."""
    ids = sorted(customer_ids)
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(Order.id, Order.customer_id, Order.order_seq)
            .where(Order.customer_id.in_(ids[start : start + 500]))
            .order_by(Order.customer_id, Order.paid_at, Order.id)
        ).all()
        seq, last = 0, None
        for order_id, customer_id, current in rows:
            seq = seq + 1 if customer_id == last else 1
            last = customer_id
            if current != seq:
                session.execute(update(Order).where(Order.id == order_id).values(order_seq=seq))


def _event(state: _State, cells: dict[str, str], mapping: Mapping) -> str:
    name = cells["name"]
    if name not in BEHAVIOUR_EVENTS:
        raise BadValue(
            f"{mapping.columns['name']}: unknown event '{name}'"
            f"{did_you_mean(name, BEHAVIOUR_EVENTS)} (events: {', '.join(BEHAVIOUR_EVENTS)})"
        )
    values: dict[str, Any] = dict(
        customer_id=state.customer_id(cells["customer"]),
        name=name,
        occurred_at=parse_time(cells["occurred_at"], mapping, mapping.columns["occurred_at"]),
        properties=parse_properties(
            cells.get("properties", ""), mapping.columns.get("properties", "properties")
        ),
    )
    existing = state.session.scalar(
        select(Event.id).where(Event.external_id == cells["external_id"])
    )
    if existing is None:
        state.session.execute(insert(Event).values(external_id=cells["external_id"], **values))
        return "inserted"
    state.session.execute(update(Event).where(Event.id == existing).values(**values))
    return "updated"
