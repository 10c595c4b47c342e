"""An import reads times in a numeric date_format with a compiled regex instead of strptime
(siyu/importer/parse.py, for speed); it must take exactly what strptime takes, as strptime
reads it, and refuse the rest."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from siyu.importer.parse import _numeric_format, _read_time

FORMATS = [
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%d.%m.%Y %H:%M",
    "%Y年%m月%d日 %H时%M分",
    "%Y-%m-%dT%H:%M:%S",
]


def strptime_or_none(text: str, date_format: str) -> datetime | None:
    try:
        return datetime.strptime(text, date_format)
    except ValueError:
        return None


def read_or_none(text: str, date_format: str) -> datetime | None:
    try:
        return _read_time(text, date_format)
    except ValueError:
        return None


def samples(date_format: str, rng: random.Random) -> list[str]:
    """Well-formed times, fields of one and two digits, out-of-range fields, odd spacing,
    non-ASCII digits and stray text."""
    texts: list[str] = []
    for _ in range(400):
        moment = datetime(rng.randrange(1900, 2100), rng.randrange(1, 13), rng.randrange(1, 29))
        moment = moment.replace(hour=rng.randrange(24), minute=rng.randrange(60))
        text = moment.strftime(date_format)
        texts.append(text)
        texts.append(text.replace("0", "", 1))  # a field of one digit, or a broken year
        texts.append(text.replace(" ", "  "))
        texts.append(text.replace("1", "９", 1))  # a fullwidth digit
        texts.append(text + "x")
        texts.append(" " + text)
        for bad in ("13", "00", "32", "24", "60", "99"):
            texts.append(text.replace(moment.strftime("%m"), bad, 1))
            texts.append(text.replace(moment.strftime("%d"), bad, 1))
            if "%H" in date_format:
                texts.append(text.replace(moment.strftime("%H"), bad, 1))
    texts += ["", "2026/02/29 10:00", "2024/02/29 10:00", "2026/2/3 4:05", "２０２６/01/01 10:00"]
    return texts


@pytest.mark.parametrize("date_format", FORMATS)
def test_the_fast_reading_takes_what_strptime_takes(date_format: str) -> None:
    assert _numeric_format(date_format) is not None  # the fast path is the one under test
    rng = random.Random(date_format)
    for text in samples(date_format, rng):
        assert read_or_none(text, date_format) == strptime_or_none(text, date_format), text


@pytest.mark.parametrize(
    ("date_format", "text"),
    [
        ("%Y%m%d%H%M", "2026131105"),  # months 1 or 13: strptime's choice, not ours
        ("%Y-%b-%d", "2026-Jan-31"),
        ("%y/%m/%d", "26/01/31"),
        ("%Y/%m/%d %%", "2026/01/31 %"),
    ],
)
def test_formats_with_adjacent_or_other_fields_are_left_to_strptime(
    date_format: str, text: str
) -> None:
    assert _numeric_format(date_format) is None
    assert read_or_none(text, date_format) == datetime.strptime(text, date_format)
