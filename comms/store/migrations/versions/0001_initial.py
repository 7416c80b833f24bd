"""The first schema: stakeholders, runs, sends, attempts, suppressions, responses.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "stakeholders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("display_email", sa.String(320), nullable=False),
        *(sa.Column(name, sa.String(size), nullable=False, server_default="")
          for name, size in [("first_name", 200), ("last_name", 200), ("role", 100),
                             ("organisation", 200), ("borough", 100), ("job_title", 200)]),
        sa.Column("tags", sa.Text, nullable=False, server_default=";"),
        sa.Column("attributes", sa.Text, nullable=False, server_default="{}"),
        sa.Column("source", sa.String(500), nullable=False, server_default=""),
        sa.Column("active", sa.Boolean, nullable=False, server_default="1"),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_stakeholders_role", "stakeholders", ["role"])
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("command", sa.String(100), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("finished_at", TS),
    )
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("campaign", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("occurrence", sa.String(40), nullable=False),
        sa.Column("stakeholder_id", sa.Integer,
                  sa.ForeignKey("stakeholders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("retryable", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("provider_id", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("claimed_at", TS),
        sa.Column("sent_at", TS),
        sa.UniqueConstraint("campaign", "step", "occurrence", "stakeholder_id",
                            name="uq_sends_key"),
    )
    op.create_index("ix_sends_queue", "sends", ["campaign", "step", "occurrence", "status"])
    op.create_index("ix_sends_stakeholder", "sends", ["stakeholder_id"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_attempts_send", "attempts", ["send_id"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("email", sa.String(320)),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_suppressions_email", "suppressions", ["email"])
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id", ondelete="CASCADE")),
        sa.Column("stakeholder_id", sa.Integer,
                  sa.ForeignKey("stakeholders.id", ondelete="CASCADE")),
        sa.Column("campaign", sa.String(64)),
        sa.Column("step", sa.String(64)),
        sa.Column("event", sa.String(64)),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("machine", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("provider_event_id", sa.String(200), unique=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("raw", sa.Text),
    )
    op.create_index("ix_responses_send", "responses", ["send_id"])
    op.create_index("ix_responses_stakeholder", "responses", ["stakeholder_id"])
