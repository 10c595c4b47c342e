"""Bounds on the work a journey file, a template or a customer's data can cause, read in one
place from the environment by siyu.settings.from_environment (docs/journey-language.md,
"Limits").

    SIYU_MAX_JOURNEY_BYTES    a journey's (or a settings YAML file's) size  (64 KiB)
    SIYU_MAX_TEMPLATE_BYTES   a template file's size                        (256 KiB)
    SIYU_MAX_YAML_NODES       a journey's YAML nodes, aliases expanded     (20,000)
    SIYU_MAX_YAML_DEPTH       a journey's YAML nesting depth                (40)
    SIYU_MAX_RENDER_SECONDS   rendering one message                         (2 s)
    SIYU_MAX_RENDER_LOOPS     loop iterations while rendering one message   (10,000)
    SIYU_MAX_MESSAGE_CHARS    one rendered message, any channel             (65,536 characters)
    SIYU_MAX_SMS_CHARS        one rendered SMS (Aliyun's long-SMS maximum)  (500 characters)
    SIYU_MAX_WECOM_BYTES      one WeCom text (add_msg_template text.content) (4,000 UTF-8 bytes)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from siyu.settings import from_environment


@dataclass(frozen=True)
class Limits:
    journey_bytes: int = 64 * 1024  # YAML with positions parses at ~15 KB/s on a busy core
    template_bytes: int = 256 * 1024
    yaml_nodes: int = 20_000
    yaml_depth: int = 40
    render_seconds: float = 2.0
    render_loops: int = 10_000
    message_chars: int = 65_536
    sms_chars: int = 500
    wecom_bytes: int = 4_000


_ENV = {
    "journey_bytes": "SIYU_MAX_JOURNEY_BYTES",
    "template_bytes": "SIYU_MAX_TEMPLATE_BYTES",
    "yaml_nodes": "SIYU_MAX_YAML_NODES",
    "yaml_depth": "SIYU_MAX_YAML_DEPTH",
    "render_seconds": "SIYU_MAX_RENDER_SECONDS",
    "render_loops": "SIYU_MAX_RENDER_LOOPS",
    "message_chars": "SIYU_MAX_MESSAGE_CHARS",
    "sms_chars": "SIYU_MAX_SMS_CHARS",
    "wecom_bytes": "SIYU_MAX_WECOM_BYTES",
}


@lru_cache(maxsize=1)
def limits() -> Limits:
    """The bounds in force: the defaults above, each overridable by its variable. Cached;
    tests that change a variable call `limits.cache_clear()`."""
    return from_environment(Limits, _ENV)
