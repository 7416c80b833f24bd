"""Why a response is a machine's: a privacy pre-fetch, a security scanner's click.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("machine_reason", sa.String(64)))
    op.execute("UPDATE responses SET machine_reason = 'sg_machine_open' "
               "WHERE machine = true AND kind = 'opened'")


def downgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("machine_reason")
