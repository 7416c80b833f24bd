"""Secrets are no longer kept in the store: they come from COMMS_SECRET_KEY (or a key file).

The suppression list's hashes are re-keyed under the key derived from the secret key: rows that
still hold their address are hashed afresh; an erased person's hash (no address left) is wrapped,
``HMAC(new key, old hash)``, and the old key kept as ``legacy:address-hash`` so a re-import can
still be refused. Without the secret key, the store alone re-identifies no one.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import context, op

from comms.keys import keyed_hash

revision = "0008"
down_revision = "0007"

meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
suppressions = sa.table("suppressions", sa.column("id", sa.Integer),
                        sa.column("email_hash", sa.String), sa.column("email", sa.String))


def upgrade() -> None:
    conn = op.get_bind()
    old = conn.execute(sa.select(meta.c.value).where(meta.c.key == "secret:address-hash")).scalar()
    keys = context.config.attributes.get("keys")
    rows = conn.execute(sa.select(suppressions)).all()
    if old is not None and keys is not None and rows:
        new = keys.derived("address-hash").hex().encode()
        for row in rows:
            fresh = (keyed_hash(new, row.email) if row.email is not None
                     else keyed_hash(new, row.email_hash))
            conn.execute(sa.update(suppressions).where(suppressions.c.id == row.id)
                         .values(email_hash=fresh))
        if any(row.email is None for row in rows):
            conn.execute(sa.insert(meta).values(key="legacy:address-hash", value=old))
    conn.execute(sa.delete(meta).where(meta.c.key.like("secret:%")))
