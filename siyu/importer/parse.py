"""One CSV cell to one typed value, or a reason the row is refused (in words a marketer can
act on: which column, what it holds, what was expected). A cell is echoed only when it cannot
be personal data (a date, an amount), shortened and with control characters escaped; names,
mobile numbers and ids are never echoed whole."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from siyu.importer.limits import ImportLimits
from siyu.importer.mapping import Mapping


class BadValue(ValueError):
    pass


# C0 control characters except tab, and DEL: never part of a name, an id or a category.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Numeric(12, 2): the largest amount the orders table holds.
MAX_AMOUNT = Decimal("9999999999.99")
_CENT = Decimal("0.01")


# 11 digits or more could be a mobile number (+86 or not): shown as 138****5678
_LONG_DIGITS = re.compile(r"\d{11,}")


def shown(text: str, width: int = 40) -> str:
    """A cell for a message: quoted, control characters escaped, at most `width` chars, any
    run of digits long enough to be a mobile number masked."""
    short = text if len(text) <= width else text[:width] + "…"
    short = _LONG_DIGITS.sub(lambda m: f"{m[0][:-8]}****{m[0][-4:]}", short)
    return repr(short) if CONTROL.search(short) else f"'{short}'"


def check_text(text: str, column: str, max_chars: int) -> None:
    """Free text and ids: no control characters, not longer than the column holds."""
    found = CONTROL.search(text)
    if found:
        raise BadValue(
            f"{column}: control character U+{ord(found.group()):04X} at character "
            f"{found.start() + 1} (not allowed in imported text)"
        )
    if len(text) > max_chars:
        raise BadValue(f"{column}: {len(text)} characters, at most {max_chars}")


# A date_format of numeric fields only (%Y %m %d %H %M %S and literal text) is read with one
# compiled regex: datetime.strptime re-checks its format's cache and builds a dict on every
# call, 7 µs a value, 14 % of an orders import (py-spy over `python -m bench.imports`).
# Anything the regex does not take is left to strptime, which decides; tests/tools/
# test_import_times.py compares the two over every field width.
_FIELDS = {
    "Y": r"(\d{4})",
    "m": r"(\d{1,2})",
    "d": r"(\d{1,2})",
    "H": r"(\d{1,2})",
    "M": r"(\d{1,2})",
    "S": r"(\d{1,2})",
}
_ORDER = ("Y", "m", "d", "H", "M", "S")


@cache
def _numeric_format(
    date_format: str,
) -> tuple[re.Pattern[str], Callable[[tuple[str | Any, ...]], datetime]] | None:
    """The regex for `date_format` and how its groups become a datetime, or None when the
    format has anything but the six numeric fields (each at most once, text between them)
    and text."""
    pattern: list[str] = []
    order: list[str] = []
    after_field = False  # two fields side by side (%Y%m%d) can split more ways than one
    for part in re.split(r"(%.)", date_format):
        if part.startswith("%"):
            field = part[1:]
            if field not in _FIELDS or field in order or after_field:
                return None
            pattern.append(_FIELDS[field])
            order.append(field)
            after_field = True
        elif part:
            # whitespace in a format matches any run of it, as strptime's does
            pattern.extend(
                r"\s+" if p.isspace() else re.escape(p) for p in re.split(r"(\s+)", part) if p
            )
            after_field = False
    if not {"Y", "m", "d"} <= set(order):
        return None
    compiled = re.compile("".join(pattern), re.ASCII)
    if tuple(order) == _ORDER[: len(order)]:
        # year, month, day[, hour[, minute[, second]]] as written: datetime's own argument
        # order, so one map(int) and no reordering (the usual case: 1.9 µs a value against 2.6,
        # timeit on the loaded 2-core machine)
        return compiled, lambda groups: datetime(*map(int, groups))  # type: ignore[arg-type]
    places = tuple(order.index(f) if f in order else -1 for f in _ORDER)

    def build(groups: tuple[str | Any, ...]) -> datetime:
        year, month, day, hour, minute, second = (int(groups[i]) if i >= 0 else 0 for i in places)
        return datetime(year, month, day, hour, minute, second)

    return compiled, build


def _read_time(text: str, date_format: str) -> datetime:
    compiled = _numeric_format(date_format)
    if compiled is not None:
        pattern, build = compiled
        found = pattern.fullmatch(text)
        if found is not None:
            try:
                return build(found.groups())
            except ValueError:
                pass  # strptime words the refusal
    return datetime.strptime(text, date_format)


def parse_time(text: str, mapping: Mapping, column: str, limits: ImportLimits) -> datetime:
    try:
        value = (
            _read_time(text, mapping.date_format)
            if mapping.date_format
            else datetime.fromisoformat(text)
        )
    except ValueError:
        expected = mapping.date_format or "ISO 8601, e.g. 2026-09-01 10:00:00"
        raise BadValue(
            f"{column}: {shown(text)} is not a date/time in the format {expected}"
        ) from None
    _check_year(value.year, text, column, limits)
    if value.tzinfo is None:
        value = value.replace(tzinfo=mapping.zone)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01 00:00 east of UTC
        raise BadValue(f"{column}: {shown(text)} is out of range") from None


def time_reader(mapping: Mapping, limits: ImportLimits) -> Callable[[str, str], datetime]:
    """parse_time for one mapping, resolved once per file: (text, column) → UTC datetime.
    A well-formed time in range takes the short way, one regex or fromisoformat and one zone
    conversion, without parse_time's calls and lookups per value (3.6 µs a value against
    4.4, timeit); anything else goes to parse_time, which decides and words the refusal."""
    date_format, zone = mapping.date_format, mapping.zone
    compiled = _numeric_format(date_format) if date_format else None
    low, high = limits.min_year, limits.max_year

    def read(text: str, column: str) -> datetime:
        value: datetime | None = None
        try:
            if compiled is not None:
                found = compiled[0].fullmatch(text)
                if found is not None:
                    value = compiled[1](found.groups())
            elif date_format is None:
                value = datetime.fromisoformat(text)
        except ValueError:
            value = None
        if value is None or not low <= value.year <= high:
            return parse_time(text, mapping, column, limits)
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)

    return read


def parse_date(text: str, mapping: Mapping, column: str, limits: ImportLimits) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        value = parse_time(text, mapping, column, limits).astimezone(mapping.zone).date()
    _check_year(value.year, text, column, limits)
    return value


def _check_year(year: int, text: str, column: str, limits: ImportLimits) -> None:
    if not limits.min_year <= year <= limits.max_year:
        raise BadValue(
            f"{column}: {shown(text)} is outside the years {limits.min_year}-{limits.max_year} "
            "(SIYU_IMPORT_MIN_YEAR/MAX_YEAR)"
        )


def parse_amount(text: str, column: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", "").replace("¥", "").strip())
    except InvalidOperation:
        raise BadValue(f"{column}: {shown(text)} is not an amount (e.g. 199.00)") from None
    if not value.is_finite():
        raise BadValue(f"{column}: {shown(text)} is not an amount (e.g. 199.00)")
    if value < 0:
        raise BadValue(f"{column}: amount {shown(text)} is negative")
    if value > MAX_AMOUNT:
        raise BadValue(f"{column}: amount {shown(text)} is larger than {MAX_AMOUNT}")
    cents = value.quantize(_CENT)
    if cents != value:
        raise BadValue(f"{column}: amount {shown(text)} has more than 2 decimal places")
    return cents


YES = {"1", "y", "yes", "true", "是", "同意", "已同意", "granted"}
NO = {"0", "n", "no", "false", "否", "不同意", "拒绝", "已退订", "withdrawn", "refused"}


def parse_consent(text: str, column: str) -> bool:
    value = text.strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise BadValue(f"{column}: {shown(text)} is not a yes/no (是/否, 1/0, yes/no)")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def parse_zone(text: str, column: str) -> str:
    """A time zone of the zone database, as every tick will look it up."""
    if text not in _zones():
        raise BadValue(f"{column}: {shown(text)} is not a time zone (e.g. Asia/Shanghai)")
    return text


def parse_properties(text: str, column: str, limits: ImportLimits) -> dict[str, Any]:
    if not text.strip():
        return {}
    if len(text) > limits.max_json_chars:
        raise BadValue(
            f"{column}: {len(text)} characters of JSON, at most {limits.max_json_chars} "
            "(SIYU_IMPORT_MAX_JSON_CHARS)"
        )
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise BadValue(f"{column}: not JSON ({error.msg} at character {error.pos})") from None
    except RecursionError:  # nested far deeper than any bound
        raise BadValue(_too_deep(column, limits)) from None
    except ValueError as error:  # NaN/Infinity, an integer of thousands of digits
        raise BadValue(f"{column}: {error}") from None
    if not isinstance(value, dict):
        raise BadValue(f'{column}: expected a JSON object like {{"sku": "A1"}}')
    _check_json(value, column, limits)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large a number")
    return value


def _too_deep(column: str, limits: ImportLimits) -> str:
    return (
        f"{column}: JSON nested deeper than {limits.max_json_depth} levels "
        "(SIYU_IMPORT_MAX_JSON_DEPTH)"
    )


def _check_json(root: dict[str, Any], column: str, limits: ImportLimits) -> None:
    """Depth within the bound, and no control characters in keys or strings; iterative, so
    depth never costs Python stack."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list) and depth > limits.max_json_depth:
            raise BadValue(_too_deep(column, limits))
        if isinstance(node, dict):
            for key, child in node.items():
                _check_json_text(key, column)
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _check_json_text(node, column)


def _check_json_text(text: str, column: str) -> None:
    found = CONTROL.search(text)
    if found and found.group() not in "\n\r":
        raise BadValue(f"{column}: JSON text holds control character U+{ord(found.group()):04X}")
