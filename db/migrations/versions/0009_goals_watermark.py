"""journeys.goals_through: how far each tick's goal scan got

Without it, every tick joined each enrollment still inside its goal window with every goal
event the customer ever had: on PostgreSQL, a scan of the whole orders table per tick
(tests/test_plan_cliffs.py). Like exits_through, the next tick scans only events since then,
minus the late-event window. NULL (an existing journey before this revision) scans as before,
once.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.storage.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journeys") as batch:
        batch.add_column(
            sa.Column("goals_through", siyu.storage.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    # Not a batch: on SQLite a batch copies journeys and drops the old table, which
    # enrollments' foreign key refuses once a journey has run. SQLite drops a column in place.
    op.drop_column("journeys", "goals_through")
