"""Checks a journey's own SQL (`where:`, `audience:`, `if: {customer:}`) with a SQL parser
(sqlglot), never a regex, against a whitelist: one boolean expression made of the source's
columns, literals, operators and an explicit list of harmless functions that exist on the
database in use (or that sqlglot translates for it). Anything else — sub-queries, statements,
unknown or unlisted functions (nextval, setval, pg_sleep, randomblob, load_extension ...),
bind markers (`:x`, `?`, `%s`, `$1`, `@x`), `[col]` quoting — is refused before it runs.
The condition is then re-printed in the database's own dialect, `current_date` as the date of
the tick's `now` in the journey's time zone (a literal), never the database's own clock.

The database still runs it read-only under a statement timeout
(siyu.storage.engine.read_only_session): this check is the first line, not the only one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from siyu.language.problems import did_you_mean
from siyu.timezones import zone

SQLITE, POSTGRESQL = "sqlite", "postgresql"
DIALECTS = (SQLITE, POSTGRESQL)
_NAMES = {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}

# Operators and leaves a condition is made of; every other node is refused.
_STRUCTURE: tuple[type[exp.Expression], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.And,
    exp.Or,
    exp.Not,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Is,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Escape,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
    exp.Neg,
    exp.DPipe,
    exp.Case,
    exp.If,
    exp.Cast,
    exp.DataType,
    exp.Var,  # EXTRACT(MONTH FROM ...)'s part
    exp.JSONPath,
    exp.JSONPathRoot,
    exp.JSONPathKey,
)

# Types a CAST may name (others differ between the databases or mean nothing there).
_CAST_TYPES = {
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.TEXT,
    exp.DataType.Type.VARCHAR,
    exp.DataType.Type.DECIMAL,
    exp.DataType.Type.DOUBLE,
}

# The harmless functions, per dialect, by how marketers write them. Each is parsed by sqlglot
# into the class given and re-printed for the database; every one is run on both databases
# by tests/hostile/test_marketer_sql.py. Date parts: `month(x)` exists on PostgreSQL (as
# EXTRACT), `strftime('%m', x)` on SQLite.
_COMMON: dict[str, type[exp.Expression]] = {
    "lower": exp.Lower,
    "upper": exp.Upper,
    "length": exp.Length,
    "coalesce": exp.Coalesce,
    "abs": exp.Abs,
    "round": exp.Round,
    "trim": exp.Trim,
    "substr": exp.Substring,
    "replace": exp.Replace,
    "nullif": exp.Nullif,
    "instr": exp.StrPosition,
    "date": exp.Date,
    "current_date": exp.CurrentDate,
    "->>": exp.JSONExtractScalar,  # properties->>'key': a behaviour event's property, as text
}
HARMLESS_FUNCTIONS: dict[str, dict[str, type[exp.Expression]]] = {
    SQLITE: {**_COMMON},
    POSTGRESQL: {
        **_COMMON,
        "month": exp.Month,
        "year": exp.Year,
        "day": exp.Day,
        "extract": exp.Extract,
    },
}
# Functions sqlglot does not know (exp.Anonymous), allowed by name on one database only.
HARMLESS_NATIVE: dict[str, frozenset[str]] = {
    SQLITE: frozenset({"strftime", "julianday"}),
    POSTGRESQL: frozenset({"date_part"}),
}

_STATEMENTS = (exp.Query, exp.Subquery, exp.DML, exp.DDL, exp.Command)
_BIND_MARKER = re.compile(r"%s|%\(\w+\)s")
_BIND_HINT = "bind markers (':x', '?', '%s', '$1', '@x') are not allowed; write the value itself"


@dataclass(frozen=True)
class WhereError:
    code: str
    message: str


def dialect_of(url: str) -> str:
    """`sqlite` or `postgresql`, from a database URL or a dialect name."""
    return SQLITE if url.startswith("sqlite") else POSTGRESQL


def check_where(where: str, columns: tuple[str, ...], dialect: str = SQLITE) -> list[WhereError]:
    """Problems of `where` as a condition over `columns` on `dialect`; [] when it may run."""
    dialect = dialect_of(dialect)
    try:
        statements = sqlglot.parse(f"SELECT 1 FROM src WHERE {where}")
    except (ParseError, SqlglotError) as error:
        if _BIND_MARKER.search(where):
            return [WhereError("bad-sql", _BIND_HINT)]
        parsed: list[dict[str, Any]] | None = getattr(error, "errors", None)
        detail = parsed[0]["description"] if parsed else str(error).splitlines()[0]
        return [WhereError("bad-sql", f'cannot parse the condition "{where}": {detail}')]
    if len(statements) != 1 or statements[0] is None:
        return [
            WhereError(
                "bad-sql",
                "the condition must be one expression, not several statements (remove ';')",
            )
        ]
    condition = statements[0].args.get("where")
    extra = {k for k, v in statements[0].args.items() if v} - {
        "expressions",
        "from",
        "from_",
        "where",
    }
    if not isinstance(condition, exp.Where) or extra:
        return [WhereError("bad-sql", f'"{where}" is not a plain condition')]
    if any(isinstance(node, _STATEMENTS) for node in condition.walk()):
        return [
            WhereError(
                "bad-sql",
                "sub-queries and statements are not allowed in a condition; "
                "use the source's columns",
            )
        ]
    errors: list[WhereError] = []
    for node in condition.this.walk(bfs=False):  # in reading order
        problem = _check_node(node, columns, dialect)
        if problem is not None and problem not in errors:
            errors.append(problem)
    return errors


def _check_node(node: exp.Expression, columns: tuple[str, ...], dialect: str) -> WhereError | None:
    if isinstance(node, exp.Placeholder | exp.Parameter | exp.SessionParameter):
        return WhereError("bad-sql", _BIND_HINT)
    if isinstance(node, exp.Array | exp.Bracket):
        return WhereError(
            "bad-sql",
            f"'[{', '.join(e.sql() for e in node.expressions)}]' is not allowed: write a "
            "column's name plain (or in double quotes), "
            "not in [brackets]",
        )
    if isinstance(node, exp.Column):
        return _check_column(node, columns)
    if isinstance(node, exp.Anonymous):
        return _check_native(str(node.name), dialect)
    if isinstance(node, exp.Cast):
        to = node.args.get("to")
        if isinstance(to, exp.DataType) and to.this not in _CAST_TYPES:
            return WhereError(
                "bad-sql",
                f"CAST to {to.sql()} is not allowed (INTEGER, BIGINT, TEXT, VARCHAR, DECIMAL, "
                "DOUBLE are)",
            )
        return None
    if isinstance(node, exp.CurrentDate) and node.args.get("this") is not None:
        # its one meaning is the tick's date in the journey's zone (to_dialect)
        return WhereError(
            "bad-sql",
            "current_date takes no time zone: it is the tick's date in the journey's timezone",
        )
    if isinstance(node, exp.Func) and not isinstance(node, _STRUCTURE):
        return _check_function(node, dialect)
    if not isinstance(node, _STRUCTURE):
        return WhereError("bad-sql", f"'{node.sql()}' is not allowed in a condition")
    return None


def _check_column(column: exp.Column, columns: tuple[str, ...]) -> WhereError | None:
    if column.table:
        return WhereError("bad-sql", f"write '{column.name}' without a table name")
    name = column.name
    if name.startswith(("$", ":", "@", "?")):
        return WhereError("bad-sql", _BIND_HINT)
    if name not in columns:
        return WhereError(
            "unknown-column",
            f"unknown column '{name}'{did_you_mean(name, columns)} (columns: {', '.join(columns)})",
        )
    return None


def _allowed_names(dialect: str) -> list[str]:
    return sorted([*HARMLESS_FUNCTIONS[dialect], *HARMLESS_NATIVE[dialect]])


def _check_function(node: exp.Func, dialect: str) -> WhereError | None:
    if any(isinstance(node, cls) for cls in HARMLESS_FUNCTIONS[dialect].values()):
        return None
    name = (node.sql_name() or type(node).__name__).lower()
    return _refuse_function(name, dialect)


def _check_native(name: str, dialect: str) -> WhereError | None:
    if name.lower() in HARMLESS_NATIVE[dialect]:
        return None
    return _refuse_function(name.lower(), dialect)


def _refuse_function(name: str, dialect: str) -> WhereError:
    allowed = _allowed_names(dialect)
    elsewhere = [d for d in DIALECTS if d != dialect and _is_allowed_on(name, d)]
    if elsewhere:
        why = f"does not exist on {_NAMES[dialect]} (the database in use)"
    else:
        why = "is not allowed"
    return WhereError(
        "bad-sql",
        f"function '{name}' {why}{did_you_mean(name, allowed)} (functions: {', '.join(allowed)})",
    )


def _is_allowed_on(name: str, dialect: str) -> bool:
    return name in HARMLESS_FUNCTIONS[dialect] or name in HARMLESS_NATIVE[dialect]


def tick_date(now: datetime, timezone: str) -> date:
    """What `current_date` means in a journey: the date of the tick's `now` in its zone."""
    return now.astimezone(zone(timezone)).date()


@lru_cache(maxsize=1024)
def _condition(where: str) -> exp.Expression:
    """The parsed condition (never changed in place: to_dialect transforms a copy)."""
    where_node = sqlglot.parse_one(f"SELECT 1 FROM src WHERE {where}").args["where"]
    condition: exp.Expression = where_node.this
    return condition


def uses_current_date(where: str | None) -> bool:
    """Whether the condition's meaning changes with the tick's date."""
    return where is not None and _condition(where).find(exp.CurrentDate) is not None


def to_dialect(where: str, dialect: str, today: date | None) -> str:
    """The condition re-printed for the database (`sqlite`, `postgresql`), `current_date`
    replaced by `today` typed as the database's own current_date is: text 'YYYY-MM-DD' on
    SQLite, a DATE on PostgreSQL. `today` may be None only for a condition without it."""
    postgres = dialect.startswith("postg")
    condition = _condition(where)
    if uses_current_date(where):
        if today is None:
            raise ValueError(f"'{where}' uses current_date: the tick's date is needed")
        day = exp.Literal.string(today.isoformat())
        literal = exp.cast(day, exp.DataType.Type.DATE) if postgres else day
        condition = condition.transform(
            lambda node: literal.copy() if isinstance(node, exp.CurrentDate) else node
        )
    return str(condition.sql(dialect="postgres" if postgres else dialect))
