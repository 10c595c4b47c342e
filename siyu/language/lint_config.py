"""Settings of the content rules (siyu.language.lint): the Advertising Law word list, what an
SMS must carry, which words make a message read like marketing.

Defaults are below; a project overrides any key in `lint.yaml` at its root, e.g.

    banned_words: [最, 第一, 国家级, 顶级]    # replaces the default list
    allowed_words: [最近, 最后, 第一次]       # compounds that are fine although they contain one
    sms_channels: [sms, sms_marketing]
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from siyu.errors import ConfigError
from siyu.language.bounded_yaml import load_settings_yaml
from siyu.language.problems import did_you_mean

LINT_FILE = "lint.yaml"


@dataclass(frozen=True)
class LintConfig:
    # 《广告法》第9条(三): no 国家级、最高级、最佳 or similar absolute terms in advertising.
    banned_words: tuple[str, ...] = (
        "最",
        "第一",
        "国家级",
        "世界级",
        "顶级",
        "极品",
        "极致",
        "首选",
        "唯一",
        "独一无二",
        "史无前例",
        "万能",
        "绝对",
        "100%",
    )
    # Ordinary words that contain a banned term and are not claims of superiority.
    allowed_words: tuple[str, ...] = ("最近", "最后", "最终", "最初", "第一次", "第一时间")
    # Channels that are SMS: a signature 【品牌】 first, and an opt-out line in marketing.
    sms_channels: tuple[str, ...] = ("sms",)
    opt_out_phrases: tuple[str, ...] = ("回T退订", "回TD退订", "拒收请回复R")
    # A notification step whose template contains one of these reads like marketing.
    marketing_words: tuple[str, ...] = (
        "券",
        "优惠",
        "折扣",
        "秒杀",
        "促销",
        "满减",
        "特价",
        "福利",
        "限时",
        "包邮",
    )


def _as_words(file: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{file}: '{key}' must be a list of words, e.g. [最, 第一, 国家级]")
    return tuple(str(v) for v in value)


@lru_cache(maxsize=8)
def _load(path: str, _mtime: float) -> LintConfig:
    file = Path(path)
    raw = load_settings_yaml(file)
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected keys such as banned_words: [...]")
    known = [f.name for f in fields(LintConfig)]
    for key in raw:
        if key not in known:
            line = raw.lc.key(key)[0] + 1 if hasattr(raw, "lc") else 0
            raise ConfigError(
                f"{file}:{line}:1: unknown key '{key}'{did_you_mean(str(key), known)} "
                f"(keys: {', '.join(known)})"
            )
    return replace(LintConfig(), **{k: _as_words(file, k, v) for k, v in raw.items()})


def load_lint_config(project_root: Path) -> LintConfig:
    """The project's lint.yaml over the defaults; re-read when the file changes."""
    path = project_root / LINT_FILE
    if not path.is_file():
        return LintConfig()
    return _load(str(path.resolve()), path.stat().st_mtime)
