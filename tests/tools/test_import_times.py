"""An import reads times in a numeric date_format with a compiled regex instead of strptime
(siyu/importer/parse.py, for speed); it must take exactly what strptime takes, as strptime
reads it, and refuse the rest."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from siyu.importer.limits import ImportLimits
from siyu.importer.mapping import Mapping
from siyu.importer.parse import BadValue, _numeric_format, _read_time, parse_time, time_reader

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


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Europe/London", "UTC"])
@pytest.mark.parametrize("date_format", [None, "%Y/%m/%d %H:%M", "%d.%m.%Y %H:%M"])
def test_a_files_time_reader_gives_what_parse_time_gives(
    zone: str, date_format: str | None
) -> None:
    """The short way (time_reader) against the reference (parse_time), on times in and out
    of daylight saving, in its gaps and folds, at the year bounds, and on bad text."""
    mapping = Mapping("orders", {}, date_format, zone, zone=ZoneInfo(zone))
    limits = ImportLimits(min_year=1990, max_year=2030)
    read = time_reader(mapping, limits)
    texts = ["", "soon", "2026-03-08 02:30", "2026-11-01 01:30", "1989-12-31 23:59"]
    moment = datetime(1990, 1, 1)
    rng = random.Random(zone)
    while moment.year <= 2031:
        texts.append(moment.strftime(date_format or "%Y-%m-%d %H:%M:%S"))
        texts.append(moment.isoformat() + "+05:30")
        moment += timedelta(hours=rng.randrange(1, 24 * 20), minutes=rng.randrange(60))
    for day in ("2026-03-08", "2026-11-01", "2026-03-29", "2026-10-25"):  # DST changes
        for hour in range(24):
            start = datetime.fromisoformat(f"{day} {hour:02d}:30")
            texts.append(start.strftime(date_format or "%Y-%m-%d %H:%M:%S"))
    for text in texts:
        try:
            expected: datetime | str = parse_time(text, mapping, "t", limits)
        except BadValue as error:
            expected = str(error)
        try:
            got: datetime | str = read(text, "t")
        except BadValue as error:
            got = str(error)
        assert got == expected, text
        if isinstance(got, datetime):
            assert got.tzinfo is UTC, text
