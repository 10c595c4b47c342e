"""Rendering marketers' Jinja templates, safely.

Templates run in Jinja's immutable sandbox (no reaching Python internals) with
StrictUndefined (a misspelt variable is an error, never an empty string in a customer's
message). A failure renders one delivery as failed and never stops the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from siyu.metrics.links import tracked

# The names a template can use. `customer` and `event` are the customer's row and the entry
# event's row; `journey` and `step` are their ids; `variant` the experiment variant (or None);
# `unsubscribe_url` a signed link that opts the customer out of this channel.
CONTEXT_NAMES = ("customer", "event", "journey", "step", "variant", "unsubscribe_url")


def localtime(
    value: datetime | date | None, timezone: str = "Asia/Shanghai", fmt: str = "%Y-%m-%d %H:%M"
) -> str:
    """`{{ event.renews_at | localtime(customer.timezone, "%Y-%m-%d") }}`: a stored (UTC)
    time as the customer reads it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(ZoneInfo(timezone)).strftime(fmt)
    return value.strftime(fmt)


def make_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=False,  # messages are plain text, not HTML
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["localtime"] = localtime
    environment.filters["tracked"] = tracked  # {{ url | tracked }}: a click-tracked link
    return environment


@lru_cache(maxsize=16)
def _environment(templates_dir: str) -> ImmutableSandboxedEnvironment:
    return make_environment(Path(templates_dir))


class TemplateCache:
    """Compiled templates for one step run: loaded (and their files checked) once per step,
    not once per message. A template edited between ticks is picked up by the next step run."""

    def __init__(self, templates_dir: Path) -> None:
        self.environment = _environment(str(templates_dir))
        self._compiled: dict[str, Template] = {}
        self._names: dict[str, set[str]] = {}

    def get(self, name: str) -> Template:
        template = self._compiled.get(name)
        if template is None:
            template = self._compiled[name] = self.environment.get_template(name)
            # Jinja copies a template's globals into every render's context; as a ChainMap
            # over the environment's globals that copy walks both maps in Python (a third of
            # a short message's render). The environment's globals are never changed after
            # make_environment(), so a plain dict of them is the same, and copied in C.
            template.globals = dict(template.globals)
        return template

    def reads(self, name: str, variable: str) -> bool:
        """Whether template `name` may read `variable`, so that a value that is costly to
        make (the signed unsubscribe link) is made only for templates that use it. A
        template that includes, imports or extends another, or does not parse, may."""
        names = self._names.get(name)
        if names is None:
            try:
                source = self.environment.loader.get_source(self.environment, name)[0]  # type: ignore[union-attr]
                tree = self.environment.parse(source)
            except TemplateError:
                names = {"*"}  # rendering reports the error
            else:
                linked = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
                names = (
                    {"*"} if any(tree.find_all(linked)) else meta.find_undeclared_variables(tree)
                )
            self._names[name] = names
        return "*" in names or variable in names


@dataclass(frozen=True)
class Rendered:
    body: str | None
    error: str | None  # why rendering failed, in words a marketer can act on


def render_message(
    templates_dir: Path,
    template_name: str,
    context: dict[str, Any],
    templates: TemplateCache | None = None,
) -> Rendered:
    try:
        cache = templates or TemplateCache(templates_dir)
        template = cache.get(template_name)
        body = template.render(**context).strip()
    except TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f"{template_name}:{line}" if line else template_name
        return Rendered(None, f"{where}: {type(error).__name__}: {error}")
    except Exception as error:  # a filter or value misbehaving must not stop the batch
        return Rendered(None, f"{template_name}: {type(error).__name__}: {error}")
    if not body:
        return Rendered(None, f"{template_name}: rendered an empty message")
    return Rendered(body, None)
