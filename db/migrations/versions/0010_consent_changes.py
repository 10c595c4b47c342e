"""consent_changes: the history of consents and suppressions, each change with its moment

Append-only: every writer of a consent or a suppression adds the change in the same
transaction (siyu/storage/consent_changes.py): opt-outs, unsubscribe links and channel
refusals at the moment they are handled, imports at the file's `consent_at` or at the
import's time. A backtest turns the copy's consents and suppressions back to each simulated
moment with it (siyu/simulate/consent_replay.py). Rows written before this revision have no
history: a backtest keeps their state as it is and says so. The downgrade drops the table;
consents and suppressions themselves are untouched.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("previous", sa.String(length=16), nullable=False),
        sa.Column("previous_since", siyu.storage.types.UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_consent_changes_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_changes")),
    )
    op.create_index("ix_consent_changes_at", "consent_changes", ["at"])
    op.create_index(op.f("ix_consent_changes_customer_id"), "consent_changes", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_changes_customer_id"), table_name="consent_changes")
    op.drop_index("ix_consent_changes_at", table_name="consent_changes")
    op.drop_table("consent_changes")
