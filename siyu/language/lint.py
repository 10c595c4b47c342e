"""Content and compliance rules run on a journey that already parsed: what its templates may
say and to whom. Each rule yields Problems with file:line:column and the likely fix.

    unknown-field     event.<x> / customer.<x> the entry event's source does not provide
    consent-missing   a notification step whose message reads like marketing (notifications
                      skip the consent check and quiet hours)
    sms-signature     an SMS template that does not start with the sender's 【签名】
    sms-opt-out       a marketing SMS without an opt-out line (回T退订 ...)
    banned-word       an Advertising Law absolute term (最, 第一, 国家级 ...) in a marketing
                      template; the list is configurable (lint.yaml)
    unreachable-step  a step no path from the entry leads to
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

from siyu.graph.model import build_graph, unreachable
from siyu.language.lint_config import LintConfig
from siyu.language.problems import Problem
from siyu.language.project_files import Refused, named_in, read_source
from siyu.language.spec import JourneySpec, Step
from siyu.language.templates_check import check_template_fields
from siyu.storage.sources import CUSTOMER_COLUMNS
from siyu.storage.sources import entry_columns as entry_columns_of

Locate = Callable[[tuple[str | int, ...]], tuple[int, int]]
_SIGNATURE = re.compile(r"^【[^】]{2,16}】")


def required_consent(step: Step) -> str | None:
    """The consent purpose the engine checks before sending this step (siyu/engine/send_step.py):
    marketing steps need `marketing` consent, notifications none. The one place to extend
    when steps can name their own consent purpose."""
    return "marketing" if step.purpose == "marketing" else None


def find_words(
    text: str, words: tuple[str, ...], allowed: tuple[str, ...] = ()
) -> list[tuple[int, int, str]]:
    """(line, column, word) of each occurrence of `words` in `text` (1-based), except where
    the occurrence is part of an allowed compound (最近 is not 最)."""
    found: list[tuple[int, int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        covered = {
            i
            for word in allowed
            for m in re.finditer(re.escape(word), line)
            for i in range(m.start(), m.end())
        }
        for word in words:
            for m in re.finditer(re.escape(word), line):
                if not covered.issuperset(range(m.start(), m.end())):
                    found.append((number, m.start() + 1, word))
    return sorted(found)


def lint_journey(
    file: str, spec: JourneySpec, templates_dir: Path, locate: Locate, config: LintConfig
) -> Iterator[Problem]:
    entry_columns = entry_columns_of(spec.entry.event)
    available = {"event": entry_columns, "customer": CUSTOMER_COLUMNS}
    why = f"(journey '{spec.journey}' enters on '{spec.entry.event or spec.entry.calendar}')"
    for index, step in enumerate(spec.steps):
        try:
            path = named_in(templates_dir, step.template)
            text = read_source(templates_dir, path)
        except Refused:
            continue  # the loader reports a missing, unreadable or refused template
        yield from check_template_fields(path, available, why, templates_dir)
        yield from _consent(file, step, index, path, text, locate, config)
        if step.send in config.sms_channels:
            yield from sms_problems(step, path, text, config)
        if step.purpose == "marketing":
            for line, column, word in find_words(text, config.banned_words, config.allowed_words):
                yield Problem(
                    str(path),
                    line,
                    column,
                    "banned-word",
                    f"'{word}' is an absolute term the Advertising Law (广告法 第9条) forbids in "
                    f"marketing (step '{step.id}'); say what is true and checkable instead "
                    "(the list is in lint.yaml)",
                )
    graph = build_graph(spec)
    for node in unreachable(graph):
        if node.kind == "step":
            index = next(i for i, s in enumerate(spec.steps) if s.id == node.title)
            line, column = locate(("steps", index, "id"))
            yield Problem(
                file,
                line,
                column,
                "unreachable-step",
                f"step '{node.title}' cannot be reached from the entry; connect it or remove it",
            )


def _consent(
    file: str,
    step: Step,
    index: int,
    path: Path,
    text: str,
    locate: Locate,
    config: LintConfig,
) -> Iterator[Problem]:
    if required_consent(step) is not None:
        return
    hits = find_words(text, config.marketing_words)
    if hits:
        line, column = locate(("steps", index, "purpose"))
        words = "', '".join(sorted({w for _, _, w in hits}))
        yield Problem(
            file,
            line,
            column,
            "consent-missing",
            f"step '{step.id}' is a {step.purpose} but {path.name} reads like marketing "
            f"('{words}', line {hits[0][0]}): it would go without marketing consent and "
            "inside quiet hours — set `purpose: marketing`",
        )


def sms_problems(step: Step, path: Path, text: str, config: LintConfig) -> Iterator[Problem]:
    first = next((n for n, line in enumerate(text.splitlines(), 1) if line.strip()), 1)
    if not _SIGNATURE.match(text.strip()):
        yield Problem(
            str(path),
            first,
            1,
            "sms-signature",
            f"SMS template of step '{step.id}' must start with the sender's signature in "
            "【】, e.g. 【悦享生活】 (carriers reject SMS without a registered signature)",
        )
    if step.purpose == "marketing" and not any(p in text for p in config.opt_out_phrases):
        last = max(1, len(text.rstrip().splitlines()))
        yield Problem(
            str(path),
            last,
            1,
            "sms-opt-out",
            f"marketing SMS of step '{step.id}' needs an opt-out line: end it with "
            f"'{config.opt_out_phrases[0]}' (accepted: {', '.join(config.opt_out_phrases)})",
        )
