"""The mapping file of an import: which CSV column holds which field, how dates are written,
in which time zone, and the file's encoding (CRM exports in China are often GBK).

    customers:
      columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, consent: 营销同意,
                consent_at: 同意时间}
      date_format: "%Y/%m/%d %H:%M"      # default: ISO 8601 (2026-09-01 10:00:00)
      timezone: Asia/Shanghai            # for times without an offset
      encoding: gbk                      # default: utf-8 (a BOM is fine)
      multiline: true                    # default false: a record may not span lines
    orders:
      columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额}
"""

from __future__ import annotations

import codecs
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from siyu.errors import ConfigError
from siyu.importer.limits import ImportLimits, import_limits
from siyu.language.problems import did_you_mean

# kind → (required fields, optional fields)
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "customers": (
        ("external_id", "name"),
        (
            "mobile",
            "wecom_external_userid",
            "wechat_openid",
            "miniprogram_openid",
            "email",
            "consent",
            "consent_at",  # when the consent was given or withdrawn (its history)
            "gender",
            "city",
            "member_level",
            "birthday",
            "timezone",
            "created_at",
        ),
    ),
    "orders": (
        ("order_no", "customer", "paid_at", "amount"),
        ("category", "store"),
    ),
    "events": (
        ("external_id", "customer", "name", "occurred_at"),
        ("properties",),
    ),
}


KEYS = ("columns", "date_format", "timezone", "encoding", "multiline")
MAX_NESTING = 16  # flow brackets; a mapping needs 2
_BRACKETS = re.compile(r"[\[\]{}]")


@dataclass(frozen=True)
class Mapping:
    kind: str
    columns: dict[str, str]  # field → CSV column
    date_format: str | None = None
    timezone: str = "Asia/Shanghai"
    encoding: str = "utf-8-sig"
    zone: ZoneInfo = field(default=ZoneInfo("Asia/Shanghai"), compare=False)
    multiline: bool = False
    file: str = ""
    where: dict[str, str] = field(default_factory=dict, compare=False)  # field → file:line:col


def load_mapping(path: Path, kind: str, limits: ImportLimits | None = None) -> Mapping:
    """The `kind:` section of the mapping file; any problem is one ConfigError line naming
    the file (and line:col where the YAML has one)."""
    if kind not in FIELDS:
        raise ConfigError(
            f"cannot import '{kind}'{did_you_mean(kind, FIELDS)} (kinds: {', '.join(FIELDS)})"
        )
    raw = _load_yaml(path, (limits or import_limits()).max_mapping_bytes)
    if not isinstance(raw, dict) or kind not in raw:
        found = ", ".join(str(k) for k in raw) if isinstance(raw, dict) else "nothing"
        raise ConfigError(f"{path}: no '{kind}:' section (found: {found})")
    section = raw[kind]
    if not isinstance(section, dict) or not isinstance(section.get("columns"), dict):
        raise ConfigError(f"{_at(path, raw, kind)}: '{kind}' needs `columns:` (field: CSV column)")
    for key in section:
        if key not in KEYS:
            raise ConfigError(
                f"{_at(path, section, key)}: unknown key '{kind}.{key}'"
                f"{did_you_mean(str(key), KEYS)}"
            )
    columns, where = _columns(path, kind, section["columns"])
    timezone, zone = _zone(path, section)
    return Mapping(
        kind,
        columns,
        _date_format(path, section),
        timezone,
        zone=zone,
        encoding=_encoding(path, section),
        multiline=_flag(path, section, "multiline"),
        file=str(path),
        where=where,
    )


def _load_yaml(path: Path, max_bytes: int) -> Any:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: the mapping is not a regular file")
        if info.st_size > max_bytes:
            raise ConfigError(
                f"{path}: the mapping file is {info.st_size} bytes, at most {max_bytes} "
                "(SIYU_IMPORT_MAX_MAPPING_BYTES)"
            )
        text = path.read_bytes()[:max_bytes].decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the mapping file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: the mapping file is not UTF-8 (byte {error.start})") from None
    _check_nesting(path, text)
    try:
        return YAML(typ="rt").load(text)  # round-trip nodes carry line:col for the messages
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(str(error.problem or error.context or "not YAML").split())
        raise ConfigError(f"{at}: not valid YAML ({what})") from None
    except (YAMLError, ValueError, RecursionError) as error:
        what = " ".join(str(error).split())[:200]
        raise ConfigError(f"{path}: not valid YAML ({what or type(error).__name__})") from None


def _check_nesting(path: Path, text: str) -> None:
    """Flow brackets nested deeper than any mapping needs: the YAML parser would take
    seconds per thousand levels before failing, so refuse before parsing. (Brackets inside
    quoted strings count too; a mapping has no reason for dozens of them.)"""
    depth = 0
    for found in _BRACKETS.finditer(text):
        depth += 1 if found.group() in "[{" else -1
        if depth > MAX_NESTING:
            line = text.count("\n", 0, found.start()) + 1
            column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
            raise ConfigError(f"{path}:{line}:{column}: nested deeper than {MAX_NESTING} levels")


def _at(path: Path, node: Any, key: Any, value: bool = False) -> str:
    """file:line:col of `key` (or of its value) in a round-trip mapping node, else file."""
    try:
        line, column = node.lc.value(key) if value else node.lc.key(key)
    except (AttributeError, KeyError, TypeError):
        return str(path)
    return f"{path}:{line + 1}:{column + 1}"


def _columns(path: Path, kind: str, node: Any) -> tuple[dict[str, str], dict[str, str]]:
    required, optional = FIELDS[kind]
    columns: dict[str, str] = {}
    where: dict[str, str] = {}
    for name, column in node.items():
        at = _at(path, node, name)
        if name not in (*required, *optional):
            raise ConfigError(
                f"{at}: '{kind}.columns.{name}' is not a field of {kind}"
                f"{did_you_mean(str(name), (*required, *optional))} "
                f"(fields: {', '.join((*required, *optional))})"
            )
        if isinstance(column, bool) or not isinstance(column, str | int) or not str(column):
            raise ConfigError(f"{at}: '{kind}.columns.{name}' must be a CSV column name")
        columns[name] = str(column).strip()
        where[name] = _at(path, node, name, value=True)
    if "consent_at" in columns and "consent" not in columns:
        raise ConfigError(f"{where['consent_at']}: 'consent_at' dates a consent: map `consent` too")
    missing = [f for f in required if f not in columns]
    if missing:
        raise ConfigError(
            f"{_at(path, node, next(iter(node), None))}: "
            f"'{kind}.columns' must map {', '.join(missing)}"
        )
    return columns, where


def _date_format(path: Path, section: Any) -> str | None:
    value = section.get("date_format")
    if value is None:
        return None
    at = _at(path, section, "date_format", value=True)
    sample = datetime(2026, 9, 1, 10, 30, 15)
    try:
        if not isinstance(value, str) or "%" not in value:
            raise ValueError
        datetime.strptime(sample.strftime(value), value)
    except ValueError:
        raise ConfigError(
            f'{at}: date_format {str(value)[:60]!r} cannot read dates back; e.g. "%Y/%m/%d %H:%M"'
        ) from None
    return value


def _zone(path: Path, section: Any) -> tuple[str, ZoneInfo]:
    name = section.get("timezone", "Asia/Shanghai")
    try:
        if not isinstance(name, str):
            raise ValueError
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        at = _at(path, section, "timezone", value=True)
        raise ConfigError(
            f"{at}: {str(name)[:60]!r} is not a time zone; e.g. Asia/Shanghai"
        ) from None


def _encoding(path: Path, section: Any) -> str:
    """A codec that keeps ASCII as is (so commas, quotes and line ends are bytes we can
    split on): utf-8 (BOM or not), gbk, gb18030, big5, latin-1 ... not utf-16."""
    name = section.get("encoding", "utf-8-sig")
    at = _at(path, section, "encoding", value=True)
    try:
        if not isinstance(name, str):
            raise LookupError
        codec = codecs.lookup(name).name
        sample = b'a,"\r\n'
        ascii_safe = sample.decode(codec) == sample.decode("ascii")
    except LookupError:  # unknown, or not a text encoding (rot13)
        raise ConfigError(f"{at}: unknown encoding {str(name)[:60]!r}; e.g. utf-8 or gbk") from None
    except UnicodeError:
        ascii_safe = False
    if not ascii_safe:
        raise ConfigError(
            f"{at}: encoding {name!r} is not supported (export the CSV as UTF-8 or GBK)"
        )
    return "utf-8-sig" if codec in ("utf-8", "utf-8-sig") else codec


def _flag(path: Path, section: Any, key: str) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{_at(path, section, key, value=True)}: {key} must be true or false")
    return value
