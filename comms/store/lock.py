"""Who holds the scheduler: one process per store, elected through the store itself.

PostgreSQL: a session advisory lock on a connection of its own; if the holder dies, the server
drops the connection and the lock with it, and the next try of another process takes it.
SQLite: an exclusive OS lock on a file beside the database, released by the OS when the holder
dies; a second process is told who holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from . import Store

_BASE = 7_402_163_911  # "comms scheduler"; each store (database + schema) gets its own number


class SchedulerLock:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn: Any = None
        self._file: Any = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._file is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        if self.store.dialect == "postgresql":
            conn = self.store.engine.connect()
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar()
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return bool(got)
        path = self._lock_path()
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def holder(self) -> str:
        """Who holds the lock, as far as can be told."""
        if self.store.dialect == "postgresql":
            return "another comms run on this database"
        try:
            host, pid = self._lock_path().read_text(encoding="utf-8").split()
        except (OSError, ValueError):
            return "another comms run on this database"
        return f"another comms run (process {pid} on {host})"

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @property
    def _key(self) -> int:
        url = make_url(self.store.url).render_as_string(hide_password=True)
        return _BASE + zlib.crc32(url.encode())

    def _lock_path(self) -> Path:
        database = make_url(self.store.url).database
        if not database or database == ":memory:":
            raise RuntimeError("an in-memory SQLite store cannot hold a scheduler lock")
        return Path(f"{database}.scheduler.lock")
