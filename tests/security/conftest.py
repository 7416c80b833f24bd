"""The security suite's helpers: production settings, the real executable, a store snapshot."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from comms.cli import cli
from comms.store import Store, tables

COMMS = Path(sys.executable).parent / "comms"
STRONG_KEY = "k3Yq0X5w9fM2rT8vLz1aN6pB4sD7gH0jU2eC5iO8yR1t"  # 44 base64url characters
PUBLIC = "https://comms.sel-learning.example"
# The clock of every command run here, unless a test sets its own: the example's launch has
# just fallen due, whatever the date (a step missed by more than a day is not sent).
LAUNCH_DUE = "2026-12-01T09:30:00+00:00"


def production(**extra: str) -> dict[str, str]:
    """Settings a real deployment would have: an https base URL and a strong key."""
    return {"COMMS_BASE_URL": PUBLIC, "COMMS_SECRET_KEY": STRONG_KEY, **extra}


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any COMMS_ setting, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
    return {**base, "COMMS_NOW": LAUNCH_DUE, **env}


def run(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """The CLI in this process, with only ``env`` as comms settings."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("COMMS_")}
    return CliRunner().invoke(cli, list(args), env={**unset, "COMMS_NOW": LAUNCH_DUE, **(env or {})},
                              catch_exceptions=False)


def process(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """The installed ``comms`` executable, as a person runs it (its own umask and all)."""
    return subprocess.run([str(COMMS), *args], env=clean_env(env or {}), cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order: equal snapshots mean nothing was written."""
    found = {}
    with store.read() as conn:
        for table in tables.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns or
                                                       table.columns)).all()
            found[table.name] = [tuple(row) for row in rows]
    return found


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite: what these tests attack does not depend on the store (tests/ covers both)."""
    return f"sqlite:///{tmp_path / 'comms.db'}"
