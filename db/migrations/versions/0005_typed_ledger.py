"""a typed ledger: deliveries.status checked against its values, the reason as a code + detail

deliveries.reason ("code:detail" in one string) becomes reason_code (one of the known codes,
checked) and reason_detail (free text). Existing rows are split at the first ':'; a reason
whose code is not known (a provider failure such as "isv.BUSINESS_LIMIT_CONTROL: ...") gets
the code `other` with the whole old string as its detail. The downgrade joins them again.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Frozen copies of db.models' values at this revision (a migration must not follow the code).
STATUSES = ("sending", "pending", "sent", "failed", "skipped", "deferred")
CODES = (
    "exited",
    "holdout",
    "no_date",
    "expired",
    "condition_false",
    "no_consent",
    "suppressed",
    "no_address",
    "circuit_open",
    "quiet_hours",
    "fatigue",
    "cap",
    "bad_customer_data",
    "render_error",
    "awaiting_confirmation",
    "not_confirmed",
    "retry",
    "refused",
    "channel_auth",
    "channel_config",
    "provider_failed",
    "other",
)
FALLBACK = "other"
SPACED = ("render_error", "not_confirmed")  # written as "code: detail"
DETAIL_ONLY = ("provider_failed", "other")  # the detail is the whole reason

_deliveries = sa.table(
    "deliveries",
    sa.column("reason", sa.String),
    sa.column("reason_code", sa.String),
    sa.column("reason_detail", sa.String),
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def split_reason(reason: str) -> tuple[str, str | None]:
    """An old reason as (code, detail): split at the first ':'."""
    code, colon, detail = reason.partition(":")
    if code not in CODES or code in DETAIL_ONLY:
        return FALLBACK, reason[:255]
    if not colon:
        return code, None
    return code, (detail.lstrip() if code in SPACED else detail)[:255]


def join_reason(code: str, detail: str | None) -> str:
    """The old one-string reason of (code, detail), as db.models.reason_text writes it."""
    if code in DETAIL_ONLY:
        return (detail or code)[:255]
    if detail is None:
        return code
    return (f"{code}: {detail}" if code in SPACED else f"{code}:{detail}")[:255]


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("reason_code", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("reason_detail", sa.String(length=255), nullable=True))
    connection = op.get_bind()
    # One UPDATE per distinct old reason: a ledger has millions of rows but few reasons.
    reasons = connection.scalars(
        sa.select(_deliveries.c.reason).where(_deliveries.c.reason.is_not(None)).distinct()
    ).all()
    for reason in reasons:
        code, detail = split_reason(reason)
        connection.execute(
            sa.update(_deliveries)
            .where(_deliveries.c.reason == reason)
            .values(reason_code=code, reason_detail=detail)
        )
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("reason")
        batch.create_check_constraint(op.f("ck_deliveries_status"), _in("status", STATUSES))
        batch.create_check_constraint(op.f("ck_deliveries_reason_code"), _in("reason_code", CODES))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=255), nullable=True))
    connection = op.get_bind()
    pairs = connection.execute(
        sa.select(_deliveries.c.reason_code, _deliveries.c.reason_detail)
        .where(_deliveries.c.reason_code.is_not(None))
        .distinct()
    ).all()
    for code, detail in pairs:
        same_detail = (
            _deliveries.c.reason_detail.is_(None)
            if detail is None
            else _deliveries.c.reason_detail == detail
        )
        connection.execute(
            sa.update(_deliveries)
            .where(_deliveries.c.reason_code == code, same_detail)
            .values(reason=join_reason(code, detail))
        )
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint(op.f("ck_deliveries_reason_code"), type_="check")
        batch.drop_constraint(op.f("ck_deliveries_status"), type_="check")
        batch.drop_column("reason_detail")
        batch.drop_column("reason_code")
