"""Processes that claim sends: registered, kept alive by heartbeats, recognised when dead."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from . import tables

STALE_AFTER = timedelta(seconds=60)
HOST = socket.gethostname()


def start(conn: Connection, command: str, now: datetime) -> str:
    run_id = uuid.uuid4().hex
    conn.execute(insert(tables.runs).values(
        id=run_id, host=HOST, pid=os.getpid(), command=command, started_at=now, heartbeat_at=now))
    return run_id


def heartbeat(conn: Connection, run_id: str, now: datetime) -> None:
    conn.execute(update(tables.runs).where(tables.runs.c.id == run_id).values(heartbeat_at=now))


def finish(conn: Connection, run_id: str, now: datetime) -> None:
    conn.execute(update(tables.runs).where(tables.runs.c.id == run_id)
                 .values(finished_at=now, heartbeat_at=now))


def dead_runs(conn: Connection, now: datetime) -> list[str]:
    """Runs that can no longer finish what they claimed: ended, silent too long, or gone."""
    r = tables.runs
    rows = conn.execute(select(r.c.id, r.c.host, r.c.pid, r.c.heartbeat_at, r.c.finished_at))
    return [run_id for run_id, host, pid, beat, finished in rows
            if finished is not None or now - beat > STALE_AFTER
            or (host == HOST and not _alive(pid))]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
