"""Rendering marketers' Jinja templates, safely.

Templates run in Jinja's immutable sandbox (no reaching Python internals) with
StrictUndefined (a misspelt variable is an error, never an empty string in a customer's
message). A failure renders one delivery as failed and never stops the batch.

Templates are read only from inside templates/ (ConfinedLoader, siyu.language.project_files),
and rendering is bounded (siyu.limits): huge numbers and strings are refused before they are
made, loops and calls watch a time budget, and the output stops at the channel's limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    meta,
    nodes,
)
from jinja2.sandbox import ImmutableSandboxedEnvironment

from siyu.engine.render_bounds import (
    CHECKED_FILTERS,
    BoundedSandbox,
    RenderRefused,
    bounded_filter,
    end_budget,
    start_budget,
)
from siyu.language.project_files import Refused, named_in, read_source
from siyu.limits import limits
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


class TemplateRefused(TemplateError):
    """A template file the confined reader refused (outside templates/, not a regular file,
    too large)."""


class ConfinedLoader(BaseLoader):
    """Templates only from inside the templates folder, through the confined reader
    (siyu.language.project_files): `{% include '../x' %}` or a link out is refused."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        try:
            path = named_in(self.folder, template)
            source = read_source(self.folder, path)
            real = path.resolve()
            mtime = os.stat(real).st_mtime_ns
        except Refused as refused:
            if refused.code == "no-such-file":
                raise TemplateNotFound(template) from None
            raise TemplateRefused(refused.message) from None
        except OSError:
            raise TemplateNotFound(template) from None

        def uptodate() -> bool:  # Jinja's cache asks before reusing a compiled template
            try:
                return path.resolve() == real and os.stat(real).st_mtime_ns == mtime
            except (OSError, RuntimeError):
                return False

        return source, str(path), uptodate


def make_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    environment = BoundedSandbox(
        loader=ConfinedLoader(templates_dir),
        undefined=StrictUndefined,
        autoescape=False,  # messages are plain text, not HTML
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=BoundedSandbox.siyu_finalize,
    )
    environment.filters["localtime"] = localtime
    environment.filters["tracked"] = tracked  # {{ url | tracked }}: a click-tracked link
    for name in CHECKED_FILTERS:
        environment.filters[name] = bounded_filter(name, environment.filters[name])
    return environment


@lru_cache(maxsize=16)
def _environment(templates_dir: str) -> ImmutableSandboxedEnvironment:
    return make_environment(Path(templates_dir))


@dataclass(frozen=True)
class MessageLimit:
    """How long one rendered message may be on a channel, and the setting that says so."""

    chars: int
    setting: str = "SIYU_MAX_MESSAGE_CHARS"
    utf8_bytes: int | None = None

    def problem(self, body: str) -> str | None:
        if len(body) > self.chars:
            return f"the message is longer than {self.chars:,} characters ({self.setting})"
        if self.utf8_bytes is not None and len(body.encode("utf-8")) > self.utf8_bytes:
            return f"the message is longer than {self.utf8_bytes:,} UTF-8 bytes ({self.setting})"
        return None


def message_limit(channel: Any = None) -> MessageLimit:
    """The limit for a channel, by whom it addresses: SMS (mobile) and WeCom texts
    (external_userid) have the providers' limits, every other channel the global cap."""
    bounds = limits()
    kind = getattr(channel, "identity_kind", None)
    if kind == "mobile":
        return MessageLimit(min(bounds.sms_chars, bounds.message_chars), "SIYU_MAX_SMS_CHARS")
    if kind == "wecom_external_userid":
        cap = min(bounds.wecom_bytes, bounds.message_chars)
        return MessageLimit(cap, "SIYU_MAX_WECOM_BYTES", utf8_bytes=bounds.wecom_bytes)
    return MessageLimit(bounds.message_chars)


class TemplateCache:
    """Compiled templates for one step run: loaded (and their files checked) once per step,
    not once per message. A template edited between ticks is picked up by the next step run.
    `limit` is how long a message may be on the step's channel (message_limit)."""

    def __init__(self, templates_dir: Path, limit: MessageLimit | None = None) -> None:
        self.environment = _environment(str(templates_dir))
        self.limit = limit or message_limit()
        self._compiled: dict[str, Template] = {}
        self._names: dict[str, frozenset[str]] = {}

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
                names = _read_names(self.environment, source)
            except Exception:  # a broken or hostile template: rendering reports the error
                names = frozenset({"*"})
            self._names[name] = names
        return "*" in names or variable in names


# A template's source → the variables it may read: every step run asked again, parsing the
# same source (about 1 ms a template, each step of each tick of a backtest).
_NAMES: dict[str, frozenset[str]] = {}


def _read_names(environment: Environment, source: str) -> frozenset[str]:
    found = _NAMES.get(source)
    if found is None:
        tree = environment.parse(source)
        linked = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
        found = frozenset(
            {"*"} if any(tree.find_all(linked)) else meta.find_undeclared_variables(tree)
        )
        if len(_NAMES) >= 256:  # templates edited while a worker runs: keep it bounded
            _NAMES.clear()
        _NAMES[source] = found
    return found


@dataclass(frozen=True)
class Rendered:
    body: str | None
    error: str | None  # why rendering failed, in words a marketer can act on; no data values


def render_message(
    templates_dir: Path,
    template_name: str,
    context: dict[str, Any],
    templates: TemplateCache | None = None,
) -> Rendered:
    """One message, within the bounds of siyu.limits (time, loops, size on the channel). A
    failure is a reason naming the template's file and line and the kind of error; the
    values of `context` (a customer's name, phone, ...) are masked out of it."""
    token = start_budget()
    try:
        cache = templates or TemplateCache(templates_dir)
        template = cache.get(template_name)
        body = _render_bounded(template, context, cache.limit)
    except Exception as error:  # a template or value misbehaving must not stop the batch
        return Rendered(None, _reason(template_name, error, context, str(templates_dir)))
    finally:
        end_budget(token)
    if not body:
        return Rendered(None, f"{template_name}: rendered an empty message")
    too_long = cache.limit.problem(body)
    if too_long is not None:
        return Rendered(None, f"{template_name}: RenderRefused: {too_long}")
    return Rendered(body, None)


def _render_bounded(template: Template, context: dict[str, Any], limit: MessageLimit) -> str:
    """The rendered text, streamed: rendering stops as soon as the output passes the
    channel's limit, so a huge message is never built."""
    parts: list[str] = []
    size, cap = 0, limit.chars + _SLACK  # leading/trailing blanks are stripped afterwards
    try:
        for part in template.root_render_func(template.new_context(context)):
            size += len(part)
            if size > cap:
                raise RenderRefused(
                    f"the message is longer than {limit.chars:,} characters ({limit.setting})"
                )
            parts.append(part)
    except Exception:
        template.environment.handle_exception()  # as Template.render: template file:line
    return "".join(parts).strip()


_SLACK = 1024
_MASK_VALUES = 2_000  # context values looked at when masking an error message
_REASON_CHARS = 200


def _reason(template_name: str, error: BaseException, context: dict[str, Any], folder: str) -> str:
    """`day3.j2:4: UndefinedError: ...`: where (from the error, else from the template frames
    Jinja puts in the traceback) and what, with the customer's values masked."""
    line = getattr(error, "lineno", None) or _template_line(error, folder)
    where = f"{template_name}:{line}" if line else template_name
    if isinstance(error, RecursionError):
        detail = "the template recurses too deeply"
    elif isinstance(error, MemoryError):
        detail = "the template asked for more memory than there is"
    else:
        detail = _mask(str(getattr(error, "message", None) or error), context)
    if len(detail) > _REASON_CHARS:
        detail = detail[: _REASON_CHARS - 1] + "…"
    return f"{where}: {type(error).__name__}: {detail}"


def _template_line(error: BaseException, folder: str) -> int | None:
    """The line of the innermost template frame: Jinja rewrites a render's traceback so
    that its frames carry the template's file name and line."""
    line = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.startswith(folder):
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _mask(message: str, context: dict[str, Any]) -> str:
    """Every value of the render's context (customer and event fields, nested ones included)
    that appears in `message`, replaced by the field's name: `<customer.name>`."""
    found: dict[str, str] = {}
    stack: list[tuple[str, Any]] = list(context.items())
    while stack and len(found) < _MASK_VALUES:
        label, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{label}.{k}", v) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{label}[{i}]", v) for i, v in enumerate(value))
        elif value is not None and not isinstance(value, bool):
            text = str(value)
            if len(text) >= (2 if isinstance(value, str) else 3):
                found.setdefault(text, label)
    for text in sorted(found, key=len, reverse=True):
        if text in message:
            message = message.replace(text, f"<{found[text]}>")
    return message
