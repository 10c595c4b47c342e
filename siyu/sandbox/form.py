"""Decoding an application/x-www-form-urlencoded body fast.

A SendBatchSms body carries a hundred Chinese messages, every byte of them percent-encoded:
urllib's unquote handles each %XX in Python and was half of the sandbox's time per message,
on the cores the engine under test also uses. Here the escapes become \\xXX and one C-level
`unicode_escape` decode turns them into bytes. A body that this cannot read exactly (a
backslash, a bad escape, text that is not UTF-8) goes through urllib instead, so the result
is always what parse_qsl gives.
"""

from __future__ import annotations

from urllib.parse import unquote_plus


def parse_form(body: str) -> dict[str, str]:
    """The fields of a form body; a repeated name keeps its last value (as dict(parse_qsl))."""
    fields: dict[str, str] = {}
    for pair in body.split("&"):
        if not pair:
            continue
        name, equals, value = pair.partition("=")
        if not equals:  # parse_qsl(keep_blank_values=True) keeps "name" as name=""
            value = ""
        fields[_unquote(name)] = _unquote(value)
    return fields


def _unquote(text: str) -> str:
    if "%" not in text:
        return text.replace("+", " ")
    if "\\" in text or not text.isascii():
        return unquote_plus(text)
    try:
        escaped = text.replace("+", " ").replace("%", "\\x")
        return escaped.encode("ascii").decode("unicode_escape").encode("latin-1").decode("utf-8")
    except (UnicodeError, ValueError):
        return unquote_plus(text)
