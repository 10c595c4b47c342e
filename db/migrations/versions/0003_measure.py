"""measure and react: segments, circuit breakers, alerts, follow-up tasks, the data timetable

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 08:19:24.332119
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.storage.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("fired_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index("ix_alert_events_rule_fired", ["rule", "fired_at"], unique=False)

    op.create_table(
        "channel_breakers",
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failure_rate", sa.Numeric(precision=6, scale=4), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("opened_at", siyu.storage.types.UTCDateTime(), nullable=True),
        sa.Column("retry_at", siyu.storage.types.UTCDateTime(), nullable=True),
        sa.Column("updated_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("channel", name=op.f("pk_channel_breakers")),
    )
    op.create_table(
        "metric_observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Numeric(precision=8, scale=4), nullable=False),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metric_observations")),
        sa.UniqueConstraint("rule", "day", name=op.f("uq_metric_observations_rule_day")),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("data_day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", siyu.storage.types.UTCDateTime(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_runs")),
        sa.UniqueConstraint("stage", "data_day", name=op.f("uq_pipeline_runs_stage_data_day")),
    )
    op.create_table(
        "follow_up_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_follow_up_tasks_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_up_tasks")),
    )
    with op.batch_alter_table("follow_up_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_follow_up_tasks_rule_status", ["rule", "status"], unique=False)

    op.create_table(
        "segment_memberships",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=16), nullable=False),
        sa.Column("entered_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.Column("left_at", siyu.storage.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_segment_memberships_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_memberships")),
    )
    with op.batch_alter_table("segment_memberships", schema=None) as batch_op:
        batch_op.create_index("ix_segment_memberships_customer", ["customer_id"], unique=False)
        batch_op.create_index(
            "ix_segment_memberships_segment_left", ["segment", "left_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("segment_memberships", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_memberships_segment_left")
        batch_op.drop_index("ix_segment_memberships_customer")

    op.drop_table("segment_memberships")
    with op.batch_alter_table("follow_up_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_follow_up_tasks_rule_status")

    op.drop_table("follow_up_tasks")
    op.drop_table("pipeline_runs")
    op.drop_table("metric_observations")
    op.drop_table("channel_breakers")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_events_rule_fired")

    op.drop_table("alert_events")
