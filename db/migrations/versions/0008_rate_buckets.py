"""rate_buckets: each channel's rate limit as one token bucket shared by the whole fleet

One row per channel and base URL: the tokens left and when they were last counted (Unix
seconds). Every partition, process, deployment and machine on the database books its calls
here (siyu/channels/rate_store.py), so N of them no longer send N times a provider's limit.
Nothing else refers to it: the downgrade drops it, and each process goes back to its own
bucket.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("counted_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_buckets")),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
