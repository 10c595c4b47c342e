"""Personal data masked for screens and logs: 138****1234, 王*明, oAb***xyz, u***@example.com.
Whatever a tool prints about a real customer goes through here."""

from __future__ import annotations

import re

_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_mobile(value: str) -> str:
    digits = value.strip()
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 8 else "*" * len(digits)


def mask_name(value: str) -> str:
    name = value.strip()
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id(value: str) -> str:
    """openids, WeCom external_userids, CRM ids: enough to tell two apart, not to use one."""
    return f"{value[:3]}***{value[-3:]}" if len(value) > 8 else value[:1] + "***"


def mask_email(value: str) -> str:
    user, _, domain = value.partition("@")
    return f"{user[:1]}***@{domain}" if domain else mask_id(value)


def mask_value(kind: str, value: str) -> str:
    if kind == "mobile":
        return mask_mobile(value)
    if kind == "email":
        return mask_email(value)
    if kind == "name":
        return mask_name(value)
    return mask_id(value)


def mask_text(text: str, known: dict[str, str] | None = None) -> str:
    """`text` with every mobile number, and every known value (kind → value), masked."""
    for kind, value in sorted((known or {}).items(), key=lambda kv: -len(kv[1])):
        if value and len(value) > 1:
            text = text.replace(value, mask_value(kind, value))
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)
