"""The CSV reader takes a file's one-line records a block at a time (siyu/importer/reader.py,
for speed); it must give exactly the records, line numbers, problems, raw bytes and byte
counts that reading the same file line by line gives, whatever the block size: random files
of good, empty, broken, unclosed, over-long, undecodable and control-character lines, with
either line end, with and without a last line end, in UTF-8 (BOM or not) and GBK."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest

from siyu.importer import reader
from siyu.importer.limits import ImportLimits
from siyu.importer.reader import CsvRecords

PIECES = [
    "a,b,c",
    '"x, y",2,3',
    "",
    "\r",
    '"unclosed,1,2',
    'q"a"b,1,2',
    '"a"b,1,2',
    "a\rb,1,2",
    "a\x1bb,1,2",
    "a\tb,1,2",
    "王,小,明",
    "x" * 300,
    '"ok ""quoted""",1,2',
    ",,",
    "  ",
    'a,"b\x00",c',
    '"",1,2',
    "a,b",
    "a,b,c,d",
    *("y" * n for n in (48, 49, 50, 98, 99, 100)),  # at the record bounds below
]


def line_by_line(data: bytes, encoding: str, limits: ImportLimits) -> list[Any]:
    records = CsvRecords(io.BytesIO(data), encoding, limits)
    found = []
    while (record := records._next_alone()) is not None:
        found.append(record)
    return [_fields(r) for r in found] + [records.bytes_read]


def in_blocks(data: bytes, encoding: str, limits: ImportLimits) -> list[Any]:
    records = CsvRecords(io.BytesIO(data), encoding, limits)
    return [_fields(r) for r in records] + [records.bytes_read]


def _fields(record: reader.Record) -> tuple[Any, ...]:
    return (record.line, record.last, record.cells, record.problem, record.raw, record.clean)


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_blocks_read_what_lines_read(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "_CHUNK", chunk)
    rng = random.Random(chunk)
    for _ in range(400):
        encoding = rng.choice(["utf-8-sig", "gbk", "utf-8"])
        lines = ["h1,h2,h3"] + [rng.choice(PIECES) for _ in range(rng.randrange(30))]
        text = "".join(line + rng.choice(["\n", "\n", "\r\n"]) for line in lines)
        if rng.random() < 0.3:
            text = text.rstrip("\n")
        data = text.encode(encoding)
        if rng.random() < 0.2:
            at = rng.randrange(len(data))
            data = data[:at] + b"\xff\xfe" + data[at:]
        limits = ImportLimits(max_record_chars=rng.choice([50, 100, 65536]))
        assert in_blocks(data, encoding, limits) == line_by_line(data, encoding, limits), data
