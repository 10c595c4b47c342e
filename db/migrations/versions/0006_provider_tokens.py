"""provider_tokens: WeCom/WeChat access tokens shared by every process on the database

One row per provider app (key: provider, app id and a SHA-256 of base URL and secret; never
the secret): the token, when it expires (UTC), when it was fetched and how many times it was.
A process that finds a valid token here uses it; one that needs a new one locks the row and
fetches once for the whole fleet (siyu/channels/token_store.py). Nothing else refers to it:
the downgrade drops it, and the processes go back to fetching their own tokens.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import siyu.storage.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_tokens",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("token", sa.String(length=512), nullable=False),
        sa.Column("expires_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", siyu.storage.types.UTCDateTime(), nullable=False),
        sa.Column("fetches", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_provider_tokens")),
    )


def downgrade() -> None:
    op.drop_table("provider_tokens")
