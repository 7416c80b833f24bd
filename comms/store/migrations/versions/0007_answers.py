"""The SEQUENCE an answer was given for (RFC 5546 ordering), and when an offered seat lapses.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("rsvps") as batch:
        batch.add_column(sa.Column("sequence", sa.Integer()))
        batch.add_column(sa.Column("offer_expires_at", sa.DateTime(timezone=True)))
