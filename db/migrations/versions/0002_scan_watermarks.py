"""journeys.enrolled_through and journeys.exits_through: how far each tick's scans got

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.storage.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(
            sa.Column("enrolled_through", siyu.storage.types.UTCDateTime(), nullable=True)
        )
        batch.add_column(
            sa.Column("exits_through", siyu.storage.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.drop_column("exits_through")
        batch.drop_column("enrolled_through")
