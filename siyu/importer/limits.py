"""Bounds of one import, each an environment variable read here and nowhere else.

SIYU_IMPORT_MAX_FILE_BYTES    1000000000  a larger CSV file is refused before it is read
SIYU_IMPORT_MAX_ROWS          5000000     more data rows than this: the file is refused
SIYU_IMPORT_MAX_RECORD_CHARS  65536       one CSV record (every column, mapped or not)
SIYU_IMPORT_MAX_FIELD_CHARS   1024        one mapped cell (a database column may allow less)
SIYU_IMPORT_MAX_JSON_CHARS    4096        an event's `properties` JSON
SIYU_IMPORT_MAX_JSON_DEPTH    8           nesting of that JSON ({"a": {"b": 1}} is 2)
SIYU_IMPORT_MIN_YEAR          1900        dates and times outside these years are refused
SIYU_IMPORT_MAX_YEAR          2100
SIYU_IMPORT_MAX_MAPPING_BYTES 65536       the mapping YAML file
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from siyu.errors import ConfigError
from siyu.settings import from_environment


@dataclass(frozen=True)
class ImportLimits:
    max_file_bytes: int = 1_000_000_000
    max_rows: int = 5_000_000
    max_record_chars: int = 65_536
    max_field_chars: int = 1024
    max_json_chars: int = 4096
    max_json_depth: int = 8
    min_year: int = 1900
    max_year: int = 2100
    max_mapping_bytes: int = 65_536


def import_limits() -> ImportLimits:
    """The defaults, overridden by SIYU_IMPORT_<NAME> variables (positive integers)."""
    variables = {spec.name: f"SIYU_IMPORT_{spec.name.upper()}" for spec in fields(ImportLimits)}
    limits = from_environment(ImportLimits, variables)
    if limits.min_year > limits.max_year:
        raise ConfigError("SIYU_IMPORT_MIN_YEAR is after SIYU_IMPORT_MAX_YEAR")
    return limits
