"""Two-person sign-off: who approved each campaign, when, and the files as they were.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("approver", sa.String(320), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("approvals")
