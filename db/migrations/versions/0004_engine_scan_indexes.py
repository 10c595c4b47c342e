"""indexes for the per-tick scans: active enrollments, goal and entry windows, ledger windows

enrollments(journey_name, status, journey_id, entered_at): the steps' due query and the
`complete` phase find one version's active enrollments from the index alone.
enrollments(journey_name, goal_reached_at, entered_at, customer_id): the goals phase reads
the goal window's enrollments without a goal, not the journey's whole history.
orders(paid_at, order_seq, customer_id): the entry window's orders, re-read every tick, with
the usual `where: order_seq = 1` answered from the index.
deliveries(channel, updated_at): the circuit breakers read the last window's rows, not the
whole ledger.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain CREATE INDEX on both SQLite and PostgreSQL: no batch copy of the tables.
    op.create_index(
        "ix_enrollments_journey_status_version",
        "enrollments",
        ["journey_name", "status", "journey_id", "entered_at"],
    )
    op.create_index(
        "ix_enrollments_journey_goal_entered",
        "enrollments",
        ["journey_name", "goal_reached_at", "entered_at", "customer_id"],
    )
    op.create_index(
        "ix_orders_paid_seq_customer", "orders", ["paid_at", "order_seq", "customer_id"]
    )
    op.create_index("ix_deliveries_channel_updated", "deliveries", ["channel", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_channel_updated", table_name="deliveries")
    op.drop_index("ix_enrollments_journey_goal_entered", table_name="enrollments")
    op.drop_index("ix_orders_paid_seq_customer", table_name="orders")
    op.drop_index("ix_enrollments_journey_status_version", table_name="enrollments")
