"""The approvals table: one sign-off per campaign, with the files as they were approved."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from . import tables
from .upsert import upsert

a = tables.approvals


def put(conn: Connection, campaign: str, approver: str, at: datetime,
        files: dict[str, str]) -> None:
    upsert(conn, a, [{"campaign": campaign, "approver": approver, "approved_at": at,
                      "files": json.dumps(files, sort_keys=True)}], ["campaign"],
           ["approver", "approved_at", "files"])


def get(conn: Connection, campaign: str) -> dict[str, Any] | None:
    row = conn.execute(select(a).where(a.c.campaign == campaign)).mappings().first()
    return {**row, "files": json.loads(row["files"])} if row else None


def listing(conn: Connection) -> list[dict[str, Any]]:
    return [{**row, "files": json.loads(row["files"])}
            for row in conn.execute(select(a).order_by(a.c.campaign)).mappings()]


def revoke(conn: Connection, campaign: str) -> bool:
    return conn.execute(delete(a).where(a.c.campaign == campaign)).rowcount > 0
