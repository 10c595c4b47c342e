"""deliveries.reason_code may be `in_doubt`: a message an earlier attempt may have sent, on a
channel that can neither deduplicate nor look it up, held for a person to decide

Only the CHECK on reason_code changes (it lists the allowed codes). The downgrade turns any
`in_doubt` row into `other` (its detail kept) before narrowing the CHECK again.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copy of the codes at 0006 (a migration must not follow the code).
CODES_0006 = (
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
CODES = (*CODES_0006, "in_doubt")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _reason_codes(codes: tuple[str, ...]) -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_constraint(op.f("ck_deliveries_reason_code"), type_="check")
        batch.create_check_constraint(op.f("ck_deliveries_reason_code"), _in("reason_code", codes))


def upgrade() -> None:
    _reason_codes(CODES)


def downgrade() -> None:
    deliveries = sa.table("deliveries", sa.column("reason_code", sa.String))
    op.execute(
        sa.update(deliveries)
        .where(deliveries.c.reason_code == "in_doubt")
        .values(reason_code="other")
    )
    _reason_codes(CODES_0006)
