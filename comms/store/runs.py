"""Processes that claim sends: registered, kept alive by heartbeats, recognised when dead."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from . import tables

HEARTBEAT = 10.0  # seconds between a run's heartbeats, from a timer of their own
STALE_AFTER = timedelta(seconds=60)  # silent this long: the run's process is gone
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


def dead_runs(conn: Connection, now: datetime, *, me: tuple[str, int] | None = None) -> list[str]:
    """Runs that can no longer finish what they claimed: ended, gone from this machine's
    process table, or silent for longer than ``STALE_AFTER``. A run's heartbeat comes from a
    timer of its own (comms/clock.py), every ``HEARTBEAT`` seconds whatever its sends are
    doing, so a sender waiting out a Retry-After or a backoff stays alive. This process's own
    runs (``me``: host and pid) are never dead."""
    host_here, pid_here = me or (HOST, os.getpid())
    r = tables.runs
    rows = conn.execute(select(r.c.id, r.c.host, r.c.pid, r.c.heartbeat_at, r.c.finished_at))
    dead = []
    for run_id, host, pid, beat, finished in rows:
        if (host, pid) == (host_here, pid_here) and finished is None:
            continue
        if finished is not None or now - beat > STALE_AFTER or (
                host == host_here and not _alive(pid)):
            dead.append(run_id)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def of_this_process(conn: Connection) -> list[str]:
    """The unfinished runs of this process."""
    r = tables.runs
    return list(conn.execute(select(r.c.id).where(r.c.host == HOST, r.c.pid == os.getpid(),
                                                  r.c.finished_at.is_(None))).scalars())
