"""The bounds of a template render (siyu.limits), as a Jinja sandbox: what a marketer's
template can make the engine do is refused before it is done, not after.

    huge numbers       a power or product of more than 1024 bits
    huge strings       `'x' * 10**8`, `a ~ a` or `a + a` past the message cap, a join or
                       replace whose result would pass it, a width of 5 digits or more
    time and loops     every loop's iterable is counted (SIYU_MAX_RENDER_LOOPS) and every
                       loop step and call checks the render's deadline (SIYU_MAX_RENDER_SECONDS)

Jinja's compiler is extended in two places (loops and `~`); its constant folding skips the
intercepted operators, so `validate` never computes them either.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2 import Environment, TemplateError, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from siyu.limits import limits


class RenderRefused(TemplateError):
    """A template asked for more than a message may take: time, loops, size, huge numbers."""


class _Budget:
    """One render's allowance of time and loop iterations."""

    def __init__(self) -> None:
        bounds = limits()
        self.deadline = time.monotonic() + bounds.render_seconds
        self.loops_left = bounds.render_loops
        self.seconds = bounds.render_seconds
        self.loops = bounds.render_loops

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderRefused(
                f"rendering took longer than {self.seconds:g} s (SIYU_MAX_RENDER_SECONDS)"
            )

    def step(self) -> None:
        self.loops_left -= 1
        if self.loops_left < 0:
            raise RenderRefused(
                f"the template loops more than {self.loops:,} times (SIYU_MAX_RENDER_LOOPS)"
            )
        self.check()


_budget: ContextVar[_Budget | None] = ContextVar("siyu_render_budget", default=None)
_MAX_INT_BITS = 1024  # no message needs a number of more than ~300 digits


def _too_long(size: int) -> None:
    cap = limits().message_chars
    if size > cap:
        raise RenderRefused(
            f"a value longer than {cap:,} characters (SIYU_MAX_MESSAGE_CHARS) was asked for"
        )


def weight(value: Any, cap: int | None = None) -> int:
    """About how many characters `value` becomes as text, counted only until `cap` is
    passed: a list of 60,000 references to one 60,000-character string is tiny in memory
    but 3.6 GB once printed."""
    cap = limits().message_chars if cap is None else cap
    total = 0
    stack = [value]
    while stack and total <= cap:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            total += 2 + len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 8
    return total


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be huge, before it is computed."""
    if operator == "**" and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1 and right * abs(left).bit_length() > _MAX_INT_BITS:
            raise RenderRefused(f"a power with more than {_MAX_INT_BITS} bits was asked for")
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
                raise RenderRefused(f"a product with more than {_MAX_INT_BITS} bits was asked for")
        elif isinstance(right, int) and isinstance(left, (str, list, tuple)):
            _too_long(weight(left) * right)
        elif isinstance(left, int) and isinstance(right, (str, list, tuple)):
            _too_long(weight(right) * left)
    elif operator == "+" and isinstance(left, (str, list, tuple)):
        _too_long(weight(left) + weight(right))
    elif operator == "%" and isinstance(left, str):
        if _WIDE_FORMAT.search(left):
            _refuse_wide_format()
        _too_long(len(left) + weight(right))


_WIDE_FORMAT = re.compile(r"%[-+ #0]*(\d{5,}|\*)|\.\d{5,}|\{[^}]*\d{5,}")


# Filters and str methods whose numeric arguments are widths or counts of the result.
_WIDTHS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "truncate", "batch"}
)


# The built-in filters whose result can be much larger than their input.
CHECKED_FILTERS = (
    *sorted(_WIDTHS - {"ljust", "rjust", "zfill", "expandtabs"}),
    "format",
    "join",
    "replace",
    "string",
    "pprint",
    "tojson",
    "list",
)
# Calls whose result is about as long as all of their arguments printed.
_PRINTING = frozenset({"format", "format_map", "join", "string", "pprint", "tojson", "list"})


def _precheck_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A filter's or method's arguments (the value or object first) that would make a huge
    string: a large width, or a join / replace whose result would be too long."""
    budget = _budget.get()
    if budget is not None:
        budget.check()
    cap = limits().message_chars
    if name in _WIDTHS:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                raise RenderRefused(f"{name}: a width larger than {cap:,} was asked for")
    if name == "format" and args and isinstance(args[0], str) and _WIDE_FORMAT.search(args[0]):
        _refuse_wide_format()
    if name in _PRINTING:
        _too_long(weight((args, list(kwargs.values()))))
    if name == "join":
        items = next((a for a in args if isinstance(a, (list, tuple))), None)
        separator = next((a for a in args if isinstance(a, str)), "")
        if items is not None:
            _too_long(weight(items) + len(separator) * len(items))
    if name == "replace" and len(args) >= 3 and all(isinstance(a, str) for a in args[:3]):
        text, old, new = args[:3]
        count = text.count(old) if old else len(text) + 1
        _too_long(len(text) + count * max(len(new) - len(old), 0))


def _refuse_wide_format(*args: Any, **kwargs: Any) -> str:
    raise RenderRefused("a format width or precision of 5 digits or more was asked for")


def bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter with _precheck_call in front (pass_context / pass_environment kept)."""

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = tuple(a for a in args if not isinstance(a, (Context, Environment, EvalContext)))
        _precheck_call(name, values, kwargs)
        return function(*args, **kwargs)

    return bounded


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every loop's iterable passed through
    `environment.siyu_loop` (counts iterations, watches the clock) and every `~` through
    `environment.siyu_join` (refuses a string past the message cap)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        iterable = node.iter
        if not (isinstance(iterable, nodes.Call) and _is_guard(iterable.node)):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("siyu_loop"), [iterable], [], None, None
            )
        super().visit_For(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.siyu_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _is_guard(node: nodes.Node) -> bool:
    return isinstance(node, nodes.EnvironmentAttribute) and node.name == "siyu_loop"


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, bounded: huge arithmetic and strings are refused before they
    are made, loops and calls watch the render's time budget (siyu.limits)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(
        __self,  # noqa: N805 (Jinja's own signature)
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        name = getattr(__obj, "__name__", "call")
        _precheck_call(str(name), (getattr(__obj, "__self__", None), *args), kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDE_FORMAT.search(str(value.__self__)):
            return _refuse_wide_format
        return wrapped

    @staticmethod
    def siyu_loop(iterable: Any) -> Iterator[Any]:
        budget = _budget.get()
        for item in iterable:
            if budget is not None:
                budget.step()
            yield item

    @staticmethod
    def siyu_join(parts: tuple[Any, ...]) -> str:
        _too_long(weight(parts))
        return "".join(map(str, parts))

    @staticmethod
    def siyu_finalize(value: Any) -> Any:
        """Every `{{ ... }}` before it becomes text (Jinja's `finalize`): a value that would
        print past the message cap is refused before it is printed."""
        if isinstance(value, (list, tuple, set, frozenset, dict)):
            _too_long(weight(value))
        return value


def start_budget() -> object:
    """A fresh allowance for one render; pass the token to end_budget afterwards."""
    return _budget.set(_Budget())


def end_budget(token: object) -> None:
    _budget.reset(token)  # type: ignore[arg-type]
