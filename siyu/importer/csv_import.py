"""Loads customers, orders and events from a CRM's CSV export with a mapping file.

The policy (docs/marketer-tools.md, "import"): every row is checked; a bad row is reported
as `file.csv:LINE: problem; problem; ...` (every problem of the row, by column, personal data
masked), is not loaded, and is copied byte for byte to the rejects file when the caller gives
one; good rows load, all in the caller's one transaction. A broken CSV record (an unclosed
quote, a short or long row, an undecodable line, an over-long record) is a bad row of its own
lines. Whatever stops the file midway (too many rows, a database error) raises, and the
caller's transaction rolls back: a file is never half-loaded without an error.

A re-import updates instead of duplicating: customers match on external_id, orders on
order_no, events on external_id. order_seq is recomputed for every customer whose orders
changed, so `order_seq = 1` (a first purchase) stays true after a late import.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from siyu.errors import ConfigError, SiyuError
from siyu.importer.limits import ImportLimits, import_limits
from siyu.importer.mapping import FIELDS, Mapping
from siyu.importer.parse import (
    BadValue,
    check_text,
    parse_amount,
    parse_consent,
    parse_date,
    parse_properties,
    parse_time,
    parse_zone,
    shown,
)
from siyu.importer.reader import CsvRecords, Record
from siyu.language.problems import did_you_mean
from siyu.preview.masking import mask_text, mask_value
from siyu.storage.models import IDENTITY_KINDS, ChannelIdentity, Consent, Customer, Event, Order
from siyu.storage.sources import BEHAVIOUR_EVENTS

Progress = Callable[[int], None]  # called with the bytes read so far
PROGRESS_EVERY = 1000  # rows between progress calls


class RejectsOut(Protocol):
    """Where rejected records go: a binary file, or the CLI's staged temporary file."""

    def write(self, data: bytes, /) -> int: ...

    def writelines(self, lines: list[bytes], /) -> None: ...


class ImportAborted(SiyuError):
    """The file stopped midway; the caller's transaction must roll back (it does when this
    propagates out of `session.begin()`)."""


@dataclass
class ImportResult:
    file: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (line or "4-6", problems)

    def report(self) -> list[str]:
        return [f"{self.file}:{line}: {reason}" for line, reason in self.bad]


@dataclass
class _Context:
    """What a cell parser needs besides the cell: limits, mapping, the file's lookups."""

    mapping: Mapping
    limits: ImportLimits
    state: _State


Parser = Callable[[str, str, _Context], Any]  # (cell, column, context) → value


def import_csv(
    session: Session,
    path: Path,
    mapping: Mapping,
    progress: Progress | None = None,
    rejects: RejectsOut | None = None,
    limits: ImportLimits | None = None,
) -> ImportResult:
    limits = limits or import_limits()
    _check_file(path, limits)
    result = ImportResult(str(path), mapping.kind)
    context = _Context(mapping, limits, _State(session))
    loader = LOADERS[mapping.kind]
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ConfigError(f"{path}: cannot open ({error.strerror})") from None
    with handle:
        records = CsvRecords(handle, mapping.encoding, limits, mapping.multiline)
        iterator = iter(records)
        header = next(iterator, None)
        if header is None:
            raise ConfigError(f"{path}: the file is empty")
        layout = _layout(mapping, _index(path, mapping, header))
        width = len(header.cells)
        rejected = _Rejects(rejects, header.raw)
        line = header.where
        try:
            for record in iterator:
                line = record.where
                if record.problem is None and not any(c.strip() for c in record.cells):
                    continue  # a blank line
                result.rows += 1
                if result.rows > limits.max_rows:
                    raise ImportAborted(
                        f"{path}:{record.line}: more than {limits.max_rows} rows "
                        "(SIYU_IMPORT_MAX_ROWS); nothing from this file was imported"
                    )
                outcome = _load(context, loader, record, layout, width)
                if isinstance(outcome, list):
                    result.bad.append((record.where, mask_text("; ".join(outcome))))
                    rejected.add(record.raw)
                elif outcome == "inserted":
                    result.inserted += 1
                else:
                    result.updated += 1
                if progress is not None and result.rows % PROGRESS_EVERY == 0:
                    progress(records.bytes_read)
            if mapping.kind == "orders":
                _renumber(session, context.state.order_customers)
        except SQLAlchemyError as error:
            reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
            raise ImportAborted(
                f"{path}:{line}: the database refused the import ({mask_text(reason)}); "
                "nothing from this file was imported"
            ) from None
    if progress is not None:
        progress(records.bytes_read)
    return result


def _check_file(path: Path, limits: ImportLimits) -> None:
    try:
        info = path.stat()
    except OSError as error:
        raise ConfigError(f"{path}: cannot open ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if info.st_size > limits.max_file_bytes:
        raise ConfigError(
            f"{path}: {info.st_size} bytes, at most {limits.max_file_bytes} "
            "(SIYU_IMPORT_MAX_FILE_BYTES); split the export"
        )


def _index(path: Path, mapping: Mapping, header: Record) -> dict[str, int]:
    """field → position in the row; a header problem or a mapped column missing from it is
    one ConfigError line naming both files."""
    if header.problem is not None:
        raise ConfigError(f"{path}:{header.where}: the header row: {header.problem}")
    names = [h.strip() for h in header.cells]
    index: dict[str, int] = {}
    for name, column in mapping.columns.items():
        if column not in names:
            listed = ", ".join(n[:40] for n in names[:30]) + (" ..." if len(names) > 30 else "")
            raise ConfigError(
                f"{path}:1: column '{column}' (for {name}) is not in the header"
                f"{did_you_mean(column, names)} (columns: {listed}; "
                f"mapping: {mapping.where.get(name, mapping.file)})"
            )
        if names.count(column) > 1:
            raise ConfigError(
                f"{path}:1: column '{column}' (for {name}) appears {names.count(column)} "
                "times in the header; rename one"
            )
        index[name] = names.index(column)
    return index


class _Rejects:
    """The rejected records, byte for byte, after the header: fix them and import that file."""

    def __init__(self, out: RejectsOut | None, header: list[bytes]) -> None:
        self.out = out
        self.header = header
        self.started = False

    def add(self, raw: list[bytes]) -> None:
        if self.out is None or not raw:
            return
        if not self.started:
            self._write(self.header)
            self.started = True
        self._write(raw)

    def _write(self, raw: list[bytes]) -> None:
        assert self.out is not None
        self.out.writelines(raw)
        if raw and not raw[-1].endswith(b"\n"):
            self.out.write(b"\n")  # the file's last line had no line end


Outcome = list[str] | str  # the row's problems, or "inserted" / "updated"
Check = Callable[[_Context, dict[str, Any]], list[str]]  # problems that need the database
Write = Callable[[_Context, dict[str, Any]], str]
Loader = tuple[Check, Write]


class _Field(NamedTuple):
    name: str
    position: int  # in the CSV row
    column: str  # its header, for messages
    parse: Parser
    required: bool


def _layout(mapping: Mapping, index: dict[str, int]) -> list[_Field]:
    """The mapped fields in mapping order, resolved once so a row costs no lookups."""
    required = FIELDS[mapping.kind][0]
    parsers = PARSERS[mapping.kind]
    return [
        _Field(name, index[name], column, parsers[name], name in required)
        for name, column in mapping.columns.items()
    ]


def _load(
    context: _Context, loader: Loader, record: Record, layout: list[_Field], width: int
) -> Outcome:
    """Check the record, then load it: its problems (a non-empty list), or what was done."""
    if record.problem is not None:
        return [record.problem]
    if len(record.cells) != width:
        return [
            f"{len(record.cells)} fields, the header has {width} "
            "(a missing or extra comma, or an unquoted comma in a value?)"
        ]
    values, problems = _values(context, record.cells, layout)
    check, write = loader
    problems += check(context, values)
    return problems or write(context, values)


def _values(
    context: _Context, cells: list[str], layout: list[_Field]
) -> tuple[dict[str, Any], list[str]]:
    """Every mapped cell parsed; every problem of the row, in the mapping's column order."""
    problems: list[str] = []
    missing: list[str] = []
    values: dict[str, Any] = {}
    for name, position, column, parse, required in layout:
        text = cells[position].strip()
        if not text:
            if required:
                missing.append(column)
            continue
        try:
            values[name] = parse(text, column, context)
        except BadValue as error:
            problems.append(str(error))
    if missing:
        problems.insert(0, f"empty {', '.join(missing)}")
    return values, problems


def _text(max_chars: int) -> Parser:
    def parse(text: str, column: str, context: _Context) -> str:
        check_text(text, column, min(max_chars, context.limits.max_field_chars))
        return text

    return parse


def _length(column: Any) -> int:
    return int(column.type.length)


_EXTERNAL_ID_CHARS = _length(Customer.external_id)


def _known_customer(text: str, column: str, context: _Context) -> int:
    check_text(text, column, min(_EXTERNAL_ID_CHARS, context.limits.max_field_chars))
    found = context.state.customers.get(text)
    if found is None:
        raise BadValue(f"unknown customer '{mask_value('id', text)}': import customers first")
    return found


def _event_name(text: str, column: str, context: _Context) -> str:
    if text not in BEHAVIOUR_EVENTS:
        raise BadValue(
            f"{column}: unknown event {shown(text)}"
            f"{did_you_mean(text, BEHAVIOUR_EVENTS)} (events: {', '.join(BEHAVIOUR_EVENTS)})"
        )
    return text


def _time(text: str, column: str, context: _Context) -> datetime:
    return parse_time(text, context.mapping, column, context.limits)


PARSERS: dict[str, dict[str, Parser]] = {
    "customers": {
        "external_id": _text(_length(Customer.external_id)),
        "name": _text(_length(Customer.name)),
        **{kind: _text(_length(ChannelIdentity.value)) for kind in IDENTITY_KINDS},
        "consent": lambda text, column, _: parse_consent(text, column),
        "gender": _text(_length(Customer.gender)),
        "city": _text(_length(Customer.city)),
        "member_level": _text(_length(Customer.member_level)),
        "birthday": lambda text, column, c: parse_date(text, c.mapping, column, c.limits),
        "timezone": lambda text, column, _: parse_zone(text, column),
        "created_at": _time,
    },
    "orders": {
        "order_no": _text(_length(Order.order_no)),
        "customer": _known_customer,
        "paid_at": _time,
        "amount": lambda text, column, _: parse_amount(text, column),
        "category": _text(_length(Order.category)),
        "store": _text(_length(Order.store)),
    },
    "events": {
        "external_id": _text(_length(Event.external_id)),
        "customer": _known_customer,
        "name": _event_name,
        "occurred_at": _time,
        "properties": lambda text, column, c: parse_properties(text, column, c.limits),
    },
}


class _State:
    """Lookups kept for the whole file so each row costs no query for them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.customers: dict[str, int] = dict(
            session.execute(select(Customer.external_id, Customer.id)).tuples().all()  # type: ignore[arg-type]
        )
        self.order_customers: set[int] = set()
        self.now = datetime.now(UTC)


def _customer_check(context: _Context, values: dict[str, Any]) -> list[str]:
    """A mobile (openid, ...) that another customer holds: one query per identity, as before."""
    state = context.state
    customer_id = state.customers.get(values.get("external_id", ""))
    problems: list[str] = []
    for kind in IDENTITY_KINDS:
        value = values.get(kind)
        if value is None:
            continue
        owner = state.session.scalar(
            select(ChannelIdentity.customer_id).where(
                ChannelIdentity.kind == kind, ChannelIdentity.value == value
            )
        )
        if owner is not None and owner != customer_id:
            problems.append(f"{kind} {mask_value(kind, value)} already belongs to another customer")
    return problems


def _no_check(_context: _Context, _values: dict[str, Any]) -> list[str]:
    return []


def _customer(context: _Context, values: dict[str, Any]) -> str:
    state = context.state
    session = state.session
    external_id = values["external_id"]
    identities = {k: values[k] for k in IDENTITY_KINDS if k in values}
    customer_id = state.customers.get(external_id)
    row = {
        k: values[k]
        for k in ("name", "gender", "city", "member_level", "timezone", "birthday", "created_at")
        if k in values
    }
    if customer_id is None:
        row.setdefault("created_at", state.now)
        customer = Customer(external_id=external_id, **row)
        session.add(customer)
        session.flush()
        customer_id = customer.id
        state.customers[external_id] = customer_id
        outcome = "inserted"
    else:
        session.execute(update(Customer).where(Customer.id == customer_id).values(**row))
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
    if "consent" in values:
        _set_consent(session, customer_id, values["consent"], state.now)
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


def _order(context: _Context, values: dict[str, Any]) -> str:
    state = context.state
    customer_id = values["customer"]
    row: dict[str, Any] = dict(
        customer_id=customer_id,
        paid_at=values["paid_at"],
        amount=values["amount"],
        category=values.get("category") or "未分类",
        store=values.get("store"),
    )
    existing = state.session.execute(
        select(Order.id, Order.customer_id).where(Order.order_no == values["order_no"])
    ).first()
    state.order_customers.add(customer_id)
    if existing is None:
        state.session.execute(insert(Order).values(order_no=values["order_no"], order_seq=0, **row))
        return "inserted"
    state.order_customers.add(existing[1])
    state.session.execute(update(Order).where(Order.id == existing[0]).values(**row))
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


def _event(context: _Context, values: dict[str, Any]) -> str:
    session = context.state.session
    row: dict[str, Any] = dict(
        customer_id=values["customer"],
        name=values["name"],
        occurred_at=values["occurred_at"],
        properties=values.get("properties", {}),
    )
    existing = session.scalar(select(Event.id).where(Event.external_id == values["external_id"]))
    if existing is None:
        session.execute(insert(Event).values(external_id=values["external_id"], **row))
        return "inserted"
    session.execute(update(Event).where(Event.id == existing).values(**row))
    return "updated"


LOADERS: dict[str, Loader] = {
    "customers": (_customer_check, _customer),
    "orders": (_no_check, _order),
    "events": (_no_check, _event),
}
