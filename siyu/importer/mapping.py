"""The mapping file of an import: which CSV column holds which field, how dates are written,
in which time zone, and the file's encoding (CRM exports in China are often GBK).

    customers:
      columns: {external_id: 会员编号, name: 姓名, mobile: 手机号, consent: 营销同意}
      date_format: "%Y/%m/%d %H:%M"      # default: ISO 8601 (2026-09-01 10:00:00)
      timezone: Asia/Shanghai            # for times without an offset
      encoding: gbk                      # default: utf-8 (a BOM is fine)
    orders:
      columns: {order_no: 订单号, customer: 会员编号, paid_at: 支付时间, amount: 实付金额}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from siyu.errors import ConfigError
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


@dataclass(frozen=True)
class Mapping:
    kind: str
    columns: dict[str, str]  # field → CSV column
    date_format: str | None = None
    timezone: str = "Asia/Shanghai"
    encoding: str = "utf-8-sig"
    zone: ZoneInfo = field(default=ZoneInfo("Asia/Shanghai"), compare=False)


def load_mapping(path: Path, kind: str) -> Mapping:
    if kind not in FIELDS:
        raise ConfigError(
            f"cannot import '{kind}'{did_you_mean(kind, FIELDS)} (kinds: {', '.join(FIELDS)})"
        )
    try:
        raw: Any = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the mapping file ({error})") from None
    if not isinstance(raw, dict) or kind not in raw:
        found = ", ".join(raw) if isinstance(raw, dict) else "nothing"
        raise ConfigError(f"{path}: no '{kind}:' section (found: {found})")
    section = raw[kind]
    if not isinstance(section, dict) or not isinstance(section.get("columns"), dict):
        raise ConfigError(f"{path}: '{kind}' needs `columns:` (field: CSV column)")
    allowed = {"columns", "date_format", "timezone", "encoding"}
    for key in section:
        if key not in allowed:
            raise ConfigError(f"{path}: unknown key '{kind}.{key}'{did_you_mean(key, allowed)}")
    required, optional = FIELDS[kind]
    columns = {str(k): str(v) for k, v in section["columns"].items()}
    for name in columns:
        if name not in (*required, *optional):
            raise ConfigError(
                f"{path}: '{kind}.columns.{name}' is not a field of {kind}"
                f"{did_you_mean(name, (*required, *optional))} "
                f"(fields: {', '.join((*required, *optional))})"
            )
    missing = [f for f in required if f not in columns]
    if missing:
        raise ConfigError(f"{path}: '{kind}.columns' must map {', '.join(missing)}")
    timezone = str(section.get("timezone", "Asia/Shanghai"))
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{path}: '{timezone}' is not a time zone; e.g. Asia/Shanghai") from None
    return Mapping(
        kind,
        columns,
        section.get("date_format"),
        timezone,
        str(section.get("encoding", "utf-8-sig")),
        zone,
    )
