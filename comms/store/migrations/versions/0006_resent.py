"""How many times a send was sent again automatically after it became uncertain (at most once).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.add_column(sa.Column("resent", sa.Integer(), nullable=False, server_default="0"))
