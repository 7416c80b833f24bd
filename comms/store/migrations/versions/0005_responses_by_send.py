"""Responses indexed by send with what reports read (kind, machine, time): an index-only scan.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.drop_index("ix_responses_send", table_name="responses")
    op.create_index("ix_responses_send", "responses",
                    ["send_id", "kind", "machine", "occurred_at"])
