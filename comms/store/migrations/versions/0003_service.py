"""The service's memory: when each campaign was first seen, pauses, processed occurrences.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaign_state",
        sa.Column("campaign", sa.String(64), primary_key=True),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("paused_at", TS),
    )
    op.create_table(
        "occurrences",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("occurrence", sa.String(40), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("processed_at", TS),
        sa.UniqueConstraint("campaign", "step", "occurrence", name="uq_occurrences_key"),
    )
