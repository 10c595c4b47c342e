"""deliveries(customer_id): the contact pressure of a batch's customers, not the whole ledger

Caps and fatigue (policies.yaml) read the ledger rows of each batch's customers
(siyu/engine/pressure.py). Without an index leading with customer_id, every batch of every
step read the whole ledger: 400,000 rows per batch of a brand with 100,000 finished
enrollments (tests/test_plan_cliffs.py), a full scan per 500 messages that grows with the
brand's history. The foreign key to customers gets its index too.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_customer", "deliveries", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_customer", table_name="deliveries")
