"""Events (UID, SEQUENCE, change fingerprint), RSVPs with a waitlist, attendance.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def _per_person() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("stakeholder_id", sa.Integer,
                  sa.ForeignKey("stakeholders.id", ondelete="CASCADE"), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("sequence", sa.Integer))
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("uid", sa.String(200), nullable=False, unique=True),
        sa.Column("sequence", sa.Integer, nullable=False, server_default="0"),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("capacity", sa.Integer),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("campaign", "event", name="uq_events_key"),
    )
    op.create_table(
        "rsvps", *_per_person(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("answered_at", TS, nullable=False),
        sa.Column("queued_at", TS),
        sa.UniqueConstraint("campaign", "event", "stakeholder_id", name="uq_rsvps_key"),
    )
    op.create_index("ix_rsvps_stakeholder", "rsvps", ["stakeholder_id"])
    op.create_table(
        "attendance", *_per_person(),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("source", sa.String(500), nullable=False, server_default=""),
        sa.UniqueConstraint("campaign", "event", "stakeholder_id", name="uq_attendance_key"),
    )
    op.create_index("ix_attendance_stakeholder", "attendance", ["stakeholder_id"])
