"""Loads customers, orders and events from a CRM's CSV export with a mapping file.

The policy (docs/marketer-tools.md, "import"): every row is checked; a bad row is reported
as `file.csv:LINE: problem; problem; ...` (every problem of the row, by column, personal data
masked), is not loaded, and is copied byte for byte to the rejects file when the caller gives
one; good rows load, all in the caller's one transaction. A broken CSV record (an unclosed
quote, a short or long row, an undecodable line, an over-long record) is a bad row of its own
lines. Whatever stops the file midway (too many rows, a database error) raises, and the
caller's transaction rolls back: a file is never half-loaded without an error.

Rows are parsed one by one and written in batches (siyu/importer/batch.py; the loaders in
load_customers.py and load_orders.py). A re-import updates instead of duplicating: customers
match on external_id, orders on order_no, events on external_id. order_seq is recomputed for
every customer whose orders changed, so `order_seq = 1` (a first purchase) stays true after a
late import.
"""

from __future__ import annotations

import gc
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from siyu.errors import ConfigError, SiyuError
from siyu.importer.batch import BATCH_ROWS, Refused, Row, Target
from siyu.importer.limits import ImportLimits, import_limits
from siyu.importer.load_customers import load_customers
from siyu.importer.load_orders import finish_orders, load_events, load_orders
from siyu.importer.mapping import FIELDS, Mapping
from siyu.importer.parse import (
    BadValue,
    check_text,
    parse_amount,
    parse_consent,
    parse_date,
    parse_properties,
    parse_zone,
    shown,
    time_reader,
)
from siyu.importer.reader import CsvRecords, Record
from siyu.language.problems import did_you_mean
from siyu.preview.masking import mask_text
from siyu.storage.models import IDENTITY_KINDS, ChannelIdentity, Customer, Event, Order
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


class BadRows:
    """The bad rows' (line or "4-6", problems), in file order. The first KEPT are held in
    memory, the rest in a temporary file: a file of millions of bad rows (a wrong
    date_format makes every row bad) costs the import no more memory than a good one."""

    KEPT = 1_000

    def __init__(self) -> None:
        self.kept: list[tuple[str, str]] = []
        self.spilled: IO[str] | None = None
        self.count = 0

    def append(self, bad: tuple[str, str]) -> None:
        self.count += 1
        if len(self.kept) < self.KEPT:
            self.kept.append(bad)
            return
        if self.spilled is None:
            self.spilled = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.spilled.write(json.dumps(bad, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from self.kept
        if self.spilled is not None:
            self.spilled.flush()
            self.spilled.seek(0)
            for text in self.spilled:
                line, reason = json.loads(text)
                yield line, reason
            self.spilled.seek(0, os.SEEK_END)


@dataclass
class ImportResult:
    file: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0  # matched a row already there, identical
    bad: BadRows = field(default_factory=BadRows)

    def report(self, limit: int | None = None) -> Iterator[str]:
        """`file:LINE: problems` of the first `limit` bad rows (all when None)."""
        for line, reason in islice(self.bad, limit):
            yield f"{self.file}:{line}: {reason}"


@dataclass
class _Context:
    """What a cell parser needs besides the cell: limits, mapping, the file's lookups."""

    mapping: Mapping
    limits: ImportLimits
    read_time: Callable[[str, str], datetime] = field(init=False)

    def __post_init__(self) -> None:
        self.read_time = time_reader(self.mapping, self.limits)


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
    load, key = LOADERS[mapping.kind]
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ConfigError(f"{path}: cannot open ({error.strerror})") from None
    with handle, _fewer_collections():
        records = CsvRecords(handle, mapping.encoding, limits, mapping.multiline)
        iterator = iter(records)
        header = next(iterator, None)
        if header is None:
            raise ConfigError(f"{path}: the file is empty")
        layout = _layout(mapping, _index(path, mapping, header), limits)
        context = _Context(mapping, limits)
        target = Target(session, datetime.now(UTC), {f.name: rank for rank, f in enumerate(layout)})
        width = len(header.cells)
        rejected = _Rejects(rejects, header.raw)
        batch: list[Row] = []
        keys: set[str] = set()
        # the lines of the file's rows: the orders written at its end may come from any
        first_line = last_line = ""

        def refused(error: Exception, first: str, last: str) -> ImportAborted:
            reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
            lines = f"{first.split('-')[0]}-{last.split('-')[-1]}"
            return ImportAborted(
                f"{path}:{lines}: the database refused the import of these rows "
                f"({mask_text(reason)}); nothing from this file was imported"
            )

        def flush() -> None:
            nonlocal first_line, last_line
            first_line, last_line = first_line or batch[0].line, batch[-1].line
            try:
                outcomes = load(target, batch)
            except (SQLAlchemyError, Refused) as error:
                raise refused(error, batch[0].line, batch[-1].line) from None
            for row, outcome in zip(batch, outcomes, strict=True):
                if outcome is None:
                    result.bad.append((row.line, mask_text("; ".join(row.reasons()))))
                    rejected.add(row.raw)
                elif outcome == "inserted":
                    result.inserted += 1
                elif outcome == "updated":
                    result.updated += 1
                else:
                    result.unchanged += 1
            batch.clear()
            keys.clear()

        for record in iterator:
            if record.problem is None and not any(c.strip() for c in record.cells):
                continue  # a blank line
            result.rows += 1
            if result.rows > limits.max_rows:
                raise ImportAborted(
                    f"{path}:{record.line}: more than {limits.max_rows} rows "
                    "(SIYU_IMPORT_MAX_ROWS); nothing from this file was imported"
                )
            row = _row(context, record, layout, width)
            name = row.values.get(key)
            if name in keys or len(batch) >= BATCH_ROWS:
                flush()  # a key twice in a batch: the second sees the first written
            if name is not None:
                keys.add(name)
            batch.append(row)
            if progress is not None and result.rows % PROGRESS_EVERY == 0:
                progress(records.bytes_read)
        if batch:
            flush()
        if mapping.kind == "orders" and first_line:
            try:
                finish_orders(target)  # the staged new orders (PostgreSQL), the renumbering
            except SQLAlchemyError as error:
                raise refused(error, first_line, last_line) from None
    if progress is not None:
        progress(records.bytes_read)
    return result


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cyclic garbage collector less often while a file loads. A batch holds thousands
    of rows, each a few containers that reference counting frees, and every 700 new ones
    made the collector walk them (and all that startup left alive): 1.13 s of the 7.25 s of
    CPU an import of 100,000 customers took, in 2,785 collections; with the heap so far
    frozen and a collection per 50,000 new containers, 0.05 s in 3 (gc callbacks around an
    in-process import of bench.imports' members.csv). Memory stays bounded: cycles are still
    collected, only later."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


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


class _Field(NamedTuple):
    name: str
    position: int  # in the CSV row
    column: str  # its header, for messages
    parse: Parser
    required: bool
    text_chars: int  # plain text: the most characters it may have; 0 for other values


def _layout(mapping: Mapping, index: dict[str, int], limits: ImportLimits) -> list[_Field]:
    """The mapped fields in mapping order, resolved once so a row costs no lookups."""
    required = FIELDS[mapping.kind][0]
    parsers = PARSERS[mapping.kind]
    return [
        _Field(
            name,
            index[name],
            column,
            parser := parsers[name],
            name in required,
            min(parser.max_chars, limits.max_field_chars) if isinstance(parser, _Text) else 0,
        )
        for name, column in mapping.columns.items()
    ]


def _row(context: _Context, record: Record, layout: list[_Field], width: int) -> Row:
    """The record's mapped cells parsed, with every problem found in them (the database's
    come when its batch is loaded)."""
    row = Row(record.where, record.raw)
    if record.problem is not None:
        row.problem(0, record.problem)
        return row
    cells = record.cells
    if len(cells) != width:
        row.problem(
            0,
            f"{len(cells)} fields, the header has {width} "
            "(a missing or extra comma, or an unquoted comma in a value?)",
        )
        return row
    missing: list[str] = []
    values = row.values
    clean = record.clean
    for rank, (name, position, column, parse, required, text_chars) in enumerate(layout):
        text = cells[position].strip()
        if not text:
            if required:
                missing.append(column)
            continue
        if clean and len(text) <= text_chars:
            values[name] = text  # plain text the record's check cleared: nothing to parse
            continue
        try:
            values[name] = parse(text, column, context)
        except BadValue as error:
            row.problem(rank, str(error))
    if missing:
        row.problem(-1, f"empty {', '.join(missing)}")
    return row


class _Text:
    """A text cell of at most `max_chars` (and the import's max_field_chars)."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def __call__(self, text: str, column: str, context: _Context) -> str:
        check_text(text, column, min(self.max_chars, context.limits.max_field_chars))
        return text


def _length(column: Any) -> int:
    return int(column.type.length)


_EXTERNAL_ID_CHARS = _length(Customer.external_id)


# A customer's external_id; whether the database has them is its batch's question.
_customer_ref = _Text(_EXTERNAL_ID_CHARS)


def _event_name(text: str, column: str, context: _Context) -> str:
    if text not in BEHAVIOUR_EVENTS:
        raise BadValue(
            f"{column}: unknown event {shown(text)}"
            f"{did_you_mean(text, BEHAVIOUR_EVENTS)} (events: {', '.join(BEHAVIOUR_EVENTS)})"
        )
    return text


def _time(text: str, column: str, context: _Context) -> datetime:
    return context.read_time(text, column)


PARSERS: dict[str, dict[str, Parser]] = {
    "customers": {
        "external_id": _Text(_length(Customer.external_id)),
        "name": _Text(_length(Customer.name)),
        **{kind: _Text(_length(ChannelIdentity.value)) for kind in IDENTITY_KINDS},
        "consent": lambda text, column, _: parse_consent(text, column),
        "consent_at": _time,
        "gender": _Text(_length(Customer.gender)),
        "city": _Text(_length(Customer.city)),
        "member_level": _Text(_length(Customer.member_level)),
        "birthday": lambda text, column, c: parse_date(text, c.mapping, column, c.limits),
        "timezone": lambda text, column, _: parse_zone(text, column),
        "created_at": _time,
    },
    "orders": {
        "order_no": _Text(_length(Order.order_no)),
        "customer": _customer_ref,
        "paid_at": _time,
        "amount": lambda text, column, _: parse_amount(text, column),
        "category": _Text(_length(Order.category)),
        "store": _Text(_length(Order.store)),
    },
    "events": {
        "external_id": _Text(_length(Event.external_id)),
        "customer": _customer_ref,
        "name": _event_name,
        "occurred_at": _time,
        "properties": lambda text, column, c: parse_properties(text, column, c.limits),
    },
}


# kind → (its batch loader, the field a re-import matches on)
LOADERS: dict[str, tuple[Callable[[Target, list[Row]], list[str | None]], str]] = {
    "customers": (load_customers, "external_id"),
    "orders": (load_orders, "order_no"),
    "events": (load_events, "external_id"),
}
