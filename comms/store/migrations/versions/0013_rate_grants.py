"""Per-minute limits as a sliding window: what each limit granted in its last minute.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.create_table(
        "rate_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
    )
    op.create_index("ix_rate_grants_name_at", "rate_grants", ["name", "at"])


def downgrade() -> None:
    op.drop_index("ix_rate_grants_name_at", "rate_grants")
    op.drop_table("rate_grants")
