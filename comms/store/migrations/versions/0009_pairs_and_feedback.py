"""Mentoring pairs (pairs/ROUND.csv) with their check-in answers, and feedback after events.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pairs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("round", sa.String(64), nullable=False),
        sa.Column("mentee_id", sa.Integer(),
                  sa.ForeignKey("stakeholders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mentor_id", sa.Integer(),
                  sa.ForeignKey("stakeholders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("active", sa.Boolean(), nullable=False, server_default="1"),
        sa.Column("answer", sa.String(16)),
        sa.Column("answered_at", _WHEN),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.UniqueConstraint("round", "mentee_id", name="uq_pairs_key"),
    )
    op.create_index("ix_pairs_mentor", "pairs", ["mentor_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("stakeholder_id", sa.Integer(),
                  sa.ForeignKey("stakeholders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("answered_at", _WHEN, nullable=False),
        sa.UniqueConstraint("campaign", "event", "stakeholder_id", name="uq_feedback_key"),
    )
    op.create_index("ix_feedback_stakeholder", "feedback", ["stakeholder_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("pairs")
