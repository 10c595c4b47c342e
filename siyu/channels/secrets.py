"""Secrets: where they come from, and how they are kept out of logs, errors and reprs.

A :class:`Secret` only yields its value through ``reveal()``; ``str``/``repr`` print a mask and
the source (``env:SIYU_WECOM_SECRET``). :func:`install_log_redaction` adds a filter to the httpx
logger, which would otherwise log request URLs such as ``gettoken?corpsecret=...`` at INFO.

The ``SANDBOX_DEV_SECRETS`` below are **sandbox-only** credentials, shared with the local sandbox
gateway. The registry uses them only when a channel's base_url is a loopback address and no
environment variable / Prefect block supplies a real secret.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from siyu.hooks import hooks

# SANDBOX ONLY. Never valid anywhere but the local sandbox gateway (siyu.sandbox).
SANDBOX_DEV_SECRETS: dict[str, str] = {
    "wecom": "sandbox-only-wecom-secret",
    "wechat": "sandbox-only-wechat-appsecret",
    "aliyun": "sandbox-only-aliyun-access-key-secret",
    "sendgrid": "SG.sandbox-only-sendgrid-key",
    "webhook": "whsec_c2FuZGJveC1vbmx5LXdlYmhvb2stc2lnbmluZy1rZXk=",
}
SANDBOX_ALIYUN_ACCESS_KEY_ID = "sandbox-access-key-id"

MASK = "***"


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        if not value:
            raise ValueError(f"empty secret from {source}")
        self._value = value
        self.source = source
        _register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK}, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[Any, ...]:  # no pickling into a Prefect result store
        raise TypeError("Secret is not picklable")


def from_env(name: str) -> Secret | None:
    value = os.environ.get(name)
    return Secret(value, f"env:{name}") if value else None


def from_prefect_block(name: str) -> Secret:
    """A Prefect ``Secret`` block, read by the hook the Prefect layer installs (siyu.hooks)."""
    return Secret(hooks.read_secret_block(name), f"prefect-block:{name}")


# --- redaction ----------------------------------------------------------------------------------
_known: set[str] = set()
_known_lock = threading.Lock()
# Query/body parameters that carry credentials, whatever their value; and Aliyun SMS's
# parameters that carry personal data (mobile numbers, the rendered message), which httpx
# would otherwise log in the request URL.
_PARAM = re.compile(
    r"(?i)\b(access_token|corpsecret|secret|appsecret|AccessKeyId|Signature|api_key"
    r"|PhoneNumbers|PhoneNumberJson|PhoneNumber|TemplateParam|TemplateParamJson)"
    r"(=|\"\s*:\s*\")([^&\s\"']+)"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+")


def _register(value: str) -> None:
    if len(value) >= 6:  # masking very short strings would mangle ordinary text
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """Mask every known secret value and every credential-looking parameter in ``text``."""
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    text = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_installed = False


def install_log_redaction() -> None:
    """Idempotently attach the redacting filter to the loggers that see our URLs."""
    global _installed
    if _installed:
        return
    for name in ("httpx", "httpcore", "siyu.channels"):
        logging.getLogger(name).addFilter(RedactingFilter())
    _installed = True
