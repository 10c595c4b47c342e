"""One CSV cell to one typed value, or a reason the row is refused (in words a marketer can
act on: which column, what it holds, what was expected)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from siyu.importer.mapping import Mapping


class BadValue(ValueError):
    pass


def parse_time(text: str, mapping: Mapping, column: str) -> datetime:
    try:
        value = (
            datetime.strptime(text, mapping.date_format)
            if mapping.date_format
            else datetime.fromisoformat(text)
        )
    except ValueError:
        expected = mapping.date_format or "ISO 8601, e.g. 2026-09-01 10:00:00"
        raise BadValue(f"{column}: '{text}' is not a date/time in the format {expected}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=mapping.zone)
    return value.astimezone(UTC)


def parse_date(text: str, mapping: Mapping, column: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return parse_time(text, mapping, column).astimezone(mapping.zone).date()


def parse_amount(text: str, column: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", "").replace("¥", "").strip())
    except InvalidOperation:
        raise BadValue(f"{column}: '{text}' is not an amount (e.g. 199.00)") from None
    if value < 0 or not value.is_finite():
        raise BadValue(f"{column}: amount {text} is negative")
    return value.quantize(Decimal("0.01"))


YES = {"1", "y", "yes", "true", "是", "同意", "已同意", "granted"}
NO = {"0", "n", "no", "false", "否", "不同意", "拒绝", "已退订", "withdrawn", "refused"}


def parse_consent(text: str, column: str) -> bool:
    value = text.strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise BadValue(f"{column}: '{text}' is not a yes/no (是/否, 1/0, yes/no)")


def parse_properties(text: str, column: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise BadValue(f"{column}: not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(value, dict):
        raise BadValue(f'{column}: expected a JSON object like {{"sku": "A1"}}')
    return value
