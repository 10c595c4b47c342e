"""A CSV file as records with their physical line numbers and raw bytes, where a broken record
is a line-numbered problem instead of data.

Python's csv module, left alone, lets an unclosed quote swallow every following row into one
field. Here each record must end on the line it starts on (a CRM export has no line breaks in
the columns we load); a mapping may allow multi-line records (`multiline: true`), and then a
record is still bounded in size. The file is read as bytes one line at a time, so an
undecodable line is one bad row, and the rejects file gets the rejected lines byte for byte.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from siyu.importer.limits import ImportLimits
from siyu.importer.parse import CONTROL

_CHUNK = 1 << 20


@dataclass(slots=True)
class Record:
    line: int  # first physical line, 1-based
    last: int  # last physical line
    cells: list[str]  # empty when `problem` says why the record could not be read
    problem: str | None
    raw: list[bytes]  # the record's lines as they are in the file ([] when too long to keep)
    # No control character anywhere in the record but its line end: then no cell has one,
    # and a text cell needs only its length checked (one regex search per record instead of
    # one per cell, which with its call was a quarter of the time cells took to parse:
    # cProfile over bench.imports' files)
    clean: bool = False

    @property
    def where(self) -> str:
        return str(self.line) if self.last == self.line else f"{self.line}-{self.last}"


class _Unclosed(Exception):
    """csv asked for a second line for one record where records are one line each."""


class _TooLong(Exception):
    pass


class _Lines:
    """The iterator csv.reader reads: one decoded physical line per call, raising instead of
    handing over a line that would make the current record span lines or exceed the cap."""

    def __init__(
        self, handle: BinaryIO, encoding: str, limits: ImportLimits, multiline: bool
    ) -> None:
        self.handle: BinaryIO | _Joined = handle
        self.encoding = encoding
        self.multiline = multiline
        self.max_chars = limits.max_record_chars
        self.max_bytes = limits.max_record_chars * 4 + 2  # no encoding needs more per char
        self.number = 0  # physical lines read so far
        self.bytes_read = 0
        self.begin()

    def begin(self) -> None:
        self.first = self.number + 1
        self.raw: list[bytes] = []
        self.chars = 0
        self.undecodable = False
        self.too_long = False
        self.control = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.raw and not self.multiline:
            raise _Unclosed
        line = self.handle.readline(self.max_bytes)
        if not line:
            raise StopIteration
        self.number += 1
        self.bytes_read += len(line)
        if len(line) == self.max_bytes and not line.endswith(b"\n"):
            self._skip_rest_of_line()
            self.raw, self.too_long = [], True
            raise _TooLong
        self.raw.append(line)
        try:
            text = line.decode(self.encoding)
        except UnicodeDecodeError:
            self.undecodable = True
            text = line.decode(self.encoding, errors="replace")
        if self.number == 1 and self.encoding == "utf-8-sig":
            self.encoding = "utf-8"  # the BOM can only open the file; utf-8 decodes faster
        self.chars += len(text)
        end = len(text)
        if text.endswith("\n"):
            end -= 2 if text.endswith("\r\n") else 1
        if len(self.raw) > 1 or CONTROL.search(text, 0, end) is not None:
            self.control = True  # a line break inside a multi-line record counts as one
        if self.chars > self.max_chars:
            self.raw, self.too_long = [], True
            raise _TooLong
        return text

    def _skip_rest_of_line(self) -> None:
        while chunk := self.handle.readline(_CHUNK):
            self.bytes_read += len(chunk)
            if chunk.endswith(b"\n"):
                return


class CsvRecords:
    """Iterate over the records after the header: `for record in CsvRecords(...)`."""

    def __init__(
        self, handle: BinaryIO, encoding: str, limits: ImportLimits, multiline: bool = False
    ) -> None:
        self.handle = handle
        self.lines = _Lines(handle, encoding, limits, multiline)
        # strict: `"a"b` (text after a closing quote) is an error, not the field `ab`
        self.reader = csv.reader(self.lines, strict=True)
        self.encoding = encoding

    @property
    def bytes_read(self) -> int:
        return self.lines.bytes_read

    def __iter__(self) -> Iterator[Record]:
        record = self._next_alone()  # the header: the file's first line, where a BOM may be
        if record is None:
            return
        yield record
        if self.lines.multiline:
            while (record := self._next_alone()) is not None:
                yield record
            return
        yield from self._blocks()

    def _next_alone(self) -> Record | None:
        """The next record, read line by line through _Lines (the reference way)."""
        lines = self.lines
        lines.begin()
        problem: str | None = None
        cells: list[str] = []
        try:
            cells = next(self.reader)
        except StopIteration:
            return None
        except _Unclosed:
            problem = (
                'a quoted field is not closed on its line (an unclosed "?); '
                "the following lines are read as rows of their own"
            )
        except _TooLong:
            problem = (
                f"the row is longer than {lines.max_chars} characters "
                '(SIYU_IMPORT_MAX_RECORD_CHARS; an unclosed "?); not copied to the rejects file'
            )
        except csv.Error as error:
            problem = _csv_problem(error)
        if problem is None and lines.undecodable:
            problem = f"not {self.encoding} text (set `encoding:` in the mapping)"
        return Record(
            lines.first,
            max(lines.number, lines.first),
            cells if problem is None else [],
            problem,
            lines.raw,
            problem is None and not lines.control,
        )

    # Records of one line each (the mapping's default), a megabyte of whole lines at a time:
    # one read, one decode and one csv.reader over the block's lines, where _Lines took a
    # Python call, a readline and a decode per line (3 µs a row, a fifth of the time reading
    # and parsing orders took). A line the block cannot take as it is (too long for a
    # record, not in the encoding, broken or unclosed CSV) is read alone by _Lines, so every
    # problem is worded as a line-by-line read words it (tests/hostile/test_csv_import.py).

    def _blocks(self) -> Iterator[Record]:
        lines = self.lines
        rest = b""
        while True:
            chunk = self.handle.read(_CHUNK)
            data = rest + chunk if rest else chunk
            if not chunk:
                if data:  # the last line has no line end
                    yield from self._alone(data)
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) < lines.max_bytes:
                rest = data  # a line longer than the chunk: read on
                continue
            if cut == 0:  # no record can be this long: the line is read alone (and skipped)
                yield from self._alone(data)
                rest = b""
                continue
            rest = data[cut:]
            yield from self._block(data[:cut])

    def _alone(self, data: bytes) -> Iterator[Record]:
        """The record(s) of `data` (whole lines, or the start of one over-long line whose
        rest is still in the file) read by _Lines, numbered on from the lines before."""
        lines = self.lines
        joined = _Joined(data, self.handle)
        lines.handle = joined
        try:
            while joined.pending():
                record = self._next_alone()
                if record is None:
                    break
                yield record
        finally:
            lines.handle = self.handle

    def _block(self, data: bytes) -> Iterator[Record]:
        lines = self.lines
        raws = _LINE.findall(data)
        try:
            decoded = data.decode(lines.encoding)
        except UnicodeDecodeError:
            yield from self._alone(data)
            return
        control = _CONTROL_IN_BLOCK.search(decoded) is not None
        texts = decoded.split("\n")
        texts.pop()  # after the block's last line end
        if len(texts) != len(raws):  # an encoding whose text splits otherwise
            yield from self._alone(data)
            return
        first = lines.number + 1
        limit = lines.max_chars - 1  # the slow way counts the line end too
        start = 0
        while start < len(texts):
            # a run of lines csv can take together: up to the next over-long one
            end = start
            while end < len(texts) and len(texts[end]) <= limit:
                end += 1
            done = start
            reader = csv.reader(texts[start:end], strict=True)
            try:
                for cells in reader:
                    if reader.line_num != done - start + 1:
                        break  # the record went on past its line (an unclosed quote)
                    clean = not control or _CONTROL_IN_LINE.search(texts[done]) is None
                    number = first + done
                    lines.number = number
                    lines.bytes_read += len(raws[done])
                    yield Record(number, number, cells, None, [raws[done]], clean)
                    done += 1
            except csv.Error:
                pass
            if done < len(texts):  # the line the run stopped at, read alone
                lines.number = first + done - 1
                yield from self._alone(raws[done])
                done += 1
            start = done


class _Joined:
    """`data` then the rest of `handle`, as _Lines reads them; pending() while data is left."""

    def __init__(self, data: bytes, handle: BinaryIO) -> None:
        self.data = io.BytesIO(data)
        self.size = len(data)
        self.handle = handle

    def pending(self) -> bool:
        return self.data.tell() < self.size

    def readline(self, size: int = -1) -> bytes:
        line = self.data.readline(size)
        if self.pending() or line.endswith(b"\n") or (size >= 0 and len(line) >= size):
            return line
        return line + self.handle.readline(size - len(line) if size >= 0 else -1)


_LINE = re.compile(rb"[^\n]*\n")
# Control characters but a line end (\r\n or \n): a block without any has clean records only.
_CONTROL_IN_BLOCK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f]|\r(?!$)")


def _csv_problem(error: csv.Error) -> str:
    message = str(error)
    if message.startswith("new-line character"):  # a bare \r: the advice csv gives is Python's
        return "broken CSV (a carriage return inside an unquoted value)"
    return f"broken CSV ({message})"
