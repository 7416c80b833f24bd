"""Delivery state per send (highest-ranked provider event), and responses by kind.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("delivery", sa.String(16)))
        batch.add_column(sa.Column("delivery_at", sa.DateTime(timezone=True)))
    op.create_index("ix_responses_kind", "responses", ["campaign", "kind"])
