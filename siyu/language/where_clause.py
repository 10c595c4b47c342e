"""Checks a journey's `where:` condition with a SQL parser (sqlglot), never a regex: it must
be one boolean expression over the event source's columns, with no sub-queries and no
statements, and it is re-printed in the database's own dialect."""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from siyu.language.problems import did_you_mean

FORBIDDEN = (
    exp.Subquery,
    exp.Select,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Drop,
    exp.Create,
    exp.Command,
    exp.Union,
)


@dataclass(frozen=True)
class WhereError:
    code: str
    message: str


def check_where(where: str, columns: tuple[str, ...]) -> list[WhereError]:
    try:
        statements = sqlglot.parse(f"SELECT 1 FROM src WHERE {where}")
    except ParseError as error:
        detail = error.errors[0]["description"] if error.errors else str(error)
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
    if any(isinstance(node, FORBIDDEN) for node in condition.walk()):
        return [
            WhereError(
                "bad-sql",
                "sub-queries and statements are not allowed in a "
                "condition; use the source's columns",
            )
        ]
    errors: list[WhereError] = []
    for column in condition.find_all(exp.Column):
        if column.table:
            errors.append(WhereError("bad-sql", f"write '{column.name}' without a table name"))
        elif column.name not in columns:
            errors.append(
                WhereError(
                    "unknown-column",
                    f"unknown column '{column.name}'{did_you_mean(column.name, columns)} "
                    f"(columns: {', '.join(columns)})",
                )
            )
    return errors


def to_dialect(where: str, dialect: str) -> str:
    """The condition re-printed for the database (`sqlite`, `postgresql`)."""
    target = "postgres" if dialect.startswith("postg") else dialect
    statement = sqlglot.parse_one(f"SELECT 1 FROM src WHERE {where}")
    return str(statement.args["where"].this.sql(dialect=target))
