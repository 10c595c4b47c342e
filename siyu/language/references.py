"""Checks of what a journey refers to: channels, templates, event sources and their columns,
other steps, date columns. They run on the raw YAML, so they report even when other keys fail
to validate."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from siyu.language.positions import position
from siyu.language.problems import Problem, SpecError, did_you_mean
from siyu.language.project_files import Refused, check_file, named_in
from siyu.language.templates_check import check_template
from siyu.language.where_clause import check_where, dialect_of
from siyu.storage.sources import CUSTOMER_COLUMNS, SOURCES

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Catalog:
    """What a journey may refer to: channel names, the templates folder and segment names
    (default: those of the segments.yaml beside the templates folder, at the project root)."""

    channels: Collection[str]
    templates_dir: Path
    segments: Collection[str] | None = None
    # The database the journeys' SQL must run on (`sqlite`, `postgresql`); default: that of
    # SIYU_DATABASE_URL, so a function missing there is refused by `siyu validate`.
    dialect: str | None = None

    def sql_dialect(self) -> str:
        if self.dialect is not None:
            return dialect_of(self.dialect)
        from siyu.storage.engine import database_url

        return dialect_of(database_url())

    def segment_names(self) -> Collection[str] | None:
        """None when segments.yaml itself is broken (`siyu segments check` reports it)."""
        if self.segments is not None:
            return self.segments
        from siyu.segments.config import load_segments  # only when a journey names a segment

        try:
            return load_segments(self.templates_dir.parent / "segments.yaml").names()
        except SpecError:
            return None


@dataclass
class _Checker:
    file: str
    raw: CommentedMap
    catalog: Catalog

    def problem(self, loc: Loc, code: str, message: str) -> Problem:
        line, col = position(self.raw, loc)
        return Problem(self.file, line, col, code, message)

    def sql(self, loc: Loc, label: str, sql: Any, columns: tuple[str, ...]) -> Iterator[Problem]:
        if isinstance(sql, str) and sql.strip():
            for error in check_where(sql, columns, self.catalog.sql_dialect()):
                yield self.problem(loc, error.code, f"{label}: {error.message}")

    def event(self, loc: Loc, label: str, spec: dict[str, Any]) -> Iterator[Problem]:
        """An `event:` with an optional `where:` on that event's columns."""
        event = spec.get("event")
        if not isinstance(event, str):
            return
        source = SOURCES.get(event)
        if source is None:
            yield self.problem(
                (*loc, "event"),
                "unknown-event",
                f"{label}: unknown event '{event}'{did_you_mean(event, SOURCES)} "
                f"(events: {', '.join(SOURCES)})",
            )
            return
        yield from self.sql((*loc, "where"), f"{label}.where", spec.get("where"), source.columns)

    def channel(self, loc: Loc, label: str, channel: Any) -> Iterator[Problem]:
        if isinstance(channel, str) and channel not in self.catalog.channels:
            yield self.problem(
                loc,
                "unknown-channel",
                f"{label}: unknown channel '{channel}'"
                f"{did_you_mean(channel, self.catalog.channels)} "
                f"(channels: {', '.join(sorted(self.catalog.channels))})",
            )

    def segment(self, loc: Loc, label: str, segment: Any) -> Iterator[Problem]:
        if not isinstance(segment, str):  # nothing referred to: segments.yaml is not read
            return
        known = self.catalog.segment_names()
        if known is not None and segment not in known:
            yield self.problem(
                loc,
                "unknown-segment",
                f"{label}: unknown segment '{segment}'{did_you_mean(segment, known)} "
                f"(segments: {', '.join(known)})",
            )

    def template(self, loc: Loc, label: str, template: Any) -> Iterator[Problem]:
        if not isinstance(template, str):
            return
        folder = self.catalog.templates_dir
        try:
            path = named_in(folder, template)
            exists = path.exists() or path.is_symlink()
            if exists:  # a link leading out of templates/, a pipe, a huge file: refused here
                check_file(folder, path)
        except Refused as refused:
            yield self.problem(
                loc, refused.code, f"{label}: template '{template}' {refused.reason}"
            )
            return
        if exists:
            yield from check_template(path, folder)
            return
        known = sorted(p.name for p in folder.glob("*.j2"))
        yield self.problem(
            loc,
            "unknown-template",
            f"{label}: template '{template}' not found in {folder}/{did_you_mean(template, known)}",
        )


def check_references(file: str, raw: CommentedMap, catalog: Catalog) -> Iterator[Problem]:
    checker = _Checker(file, raw, catalog)
    entry = raw.get("entry")
    entry_columns: tuple[str, ...] = ()
    if isinstance(entry, dict):
        yield from checker.event(("entry",), "entry", entry)
        yield from checker.sql(
            ("entry", "audience"), "entry.audience", entry.get("audience"), CUSTOMER_COLUMNS
        )
        yield from checker.segment(("entry", "segment"), "entry", entry.get("segment"))
        source = SOURCES.get(str(entry.get("event")))
        entry_columns = source.columns if source else ()
    for key in ("exit_when", "goal"):
        if isinstance(raw.get(key), dict):
            yield from checker.event((key,), key, raw[key])

    steps = raw.get("steps")
    if not isinstance(steps, list):
        return
    step_ids = [s["id"] for s in steps if isinstance(s, dict) and isinstance(s.get("id"), str)]
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        here: Loc = ("steps", index)
        name = f"step '{step['id']}'" if "id" in step else f"step #{index + 1}"
        step_id = step.get("id")
        if isinstance(step_id, str):
            if step_id in seen:
                yield checker.problem(
                    (*here, "id"),
                    "duplicate-step",
                    f"step id '{step_id}' is used twice (first as step #{seen[step_id] + 1})",
                )
            seen.setdefault(step_id, index)
        yield from checker.channel((*here, "send"), name, step.get("send"))
        yield from checker.template((*here, "template"), name, step.get("template"))
        for v_index, variant in enumerate(step.get("variants") or []):
            if isinstance(variant, dict):
                yield from checker.template(
                    (*here, "variants", v_index, "template"),
                    f"{name} variant '{variant.get('id')}'",
                    variant.get("template"),
                )
        at = step.get("at")
        if isinstance(at, dict) and isinstance(at.get("from"), str):
            yield from _check_anchor(
                checker, (*here, "at", "from"), name, at["from"], entry_columns
            )
        if "if" in step:
            yield from _check_condition(checker, (*here, "if"), name, step["if"], step_ids, step_id)


def _check_anchor(
    checker: _Checker, loc: Loc, name: str, anchor: str, entry_columns: tuple[str, ...]
) -> Iterator[Problem]:
    table, _, column = anchor.partition(".")
    columns = entry_columns if table == "event" else CUSTOMER_COLUMNS
    if table in ("event", "customer") and columns and column not in columns:
        yield checker.problem(
            loc,
            "unknown-column",
            f"{name}: at.from names '{anchor}', but {table} has no column '{column}'"
            f"{did_you_mean(column, columns)} (columns: {', '.join(columns)})",
        )


def _check_condition(
    checker: _Checker, loc: Loc, name: str, condition: Any, step_ids: list[str], own_id: Any
) -> Iterator[Problem]:
    if not isinstance(condition, dict):
        return
    label = f"{name} if"
    if "event" in condition:
        yield from checker.event(loc, label, condition)
    if "customer" in condition:
        yield from checker.sql(
            (*loc, "customer"), f"{label}.customer", condition["customer"], CUSTOMER_COLUMNS
        )
    if "reachable" in condition:
        yield from checker.channel((*loc, "reachable"), label, condition["reachable"])
    if "segment" in condition:
        yield from checker.segment((*loc, "segment"), label, condition["segment"])
    other = condition.get("step")
    if isinstance(other, str) and (other not in step_ids or other == own_id):
        reason = "is this step itself" if other == own_id else "is not a step of this journey"
        yield checker.problem(
            (*loc, "step"),
            "unknown-step",
            f"{label}: '{other}' {reason}{did_you_mean(other, step_ids)}",
        )
    for key in ("all", "any"):
        for index, child in enumerate(condition.get(key) or []):
            yield from _check_condition(checker, (*loc, key, index), name, child, step_ids, own_id)
    if "not" in condition:
        yield from _check_condition(
            checker, (*loc, "not"), name, condition["not"], step_ids, own_id
        )
