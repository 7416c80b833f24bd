"""Files of mode 600, folders of mode 700: the store and everything comms writes, whatever the
umask it is started with."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from comms.app import App
from comms.settings import load_settings

from ..conftest import FakeClock
from .conftest import process

PERSON = "tariq.nowak@bexley-ct.nhs.example"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022), as a library caller or a service manager might leave it."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def test_everything_the_commands_write_is_private(project_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("an older report, world-readable")
    (out / "report.html").chmod(0o644)
    commands = [
        ["send", "workshops"],
        ["send", "nmdi-awareness"],
        ["preview", "workshops", "invite", "--to", PERSON],
        ["contacts", "export", PERSON, "-o", str(out / "export.json")],
        ["report", "--format", "html", "-o", str(out / "report.html")],
        ["report", "--format", "csv", "-o", str(out / "report.csv")],
        ["report", "chase", "workshops", "-o", str(out / "chase.csv")],
    ]
    for command in commands:
        done = process(*command, "--project", str(project_dir))
        assert done.returncode == 0, (command, done.stderr)
    written = [project_dir / "comms.db", project_dir / "comms.db.key",
               *sorted((project_dir / "outbox").rglob("*")), *sorted(out.iterdir())]
    assert len(written) > 10
    assert {p.suffix for p in written} >= {".db", ".key", ".eml", ".html", ".ics", ".json",
                                          ".csv"}
    for path in written:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert mode(project_dir / "outbox") == 0o700


def test_the_store_and_its_journal_are_private_in_a_library_caller(
        project_dir: Path, tmp_path: Path, clock: FakeClock, open_umask: None) -> None:
    database = tmp_path / "data" / "comms.db"
    database.parent.mkdir()
    app = App(load_settings(project_dir, database_url=f"sqlite:///{database}"), clock=clock)
    app.sync_directory()
    campaign = app.project.campaign("nmdi-awareness")
    app.dispatcher().send(campaign, campaign.steps[0])
    with app.store.read():  # open: the write-ahead log and shared memory exist
        files = sorted(database.parent.iterdir())
        assert {p.name for p in files} >= {"comms.db", "comms.db-wal", "comms.db-shm",
                                          "comms.db.key"}
        for path in files:
            assert mode(path) == 0o600, path
    outbox = app.settings.resolved_outbox_dir
    assert mode(outbox) == 0o700
    assert all(mode(p) == 0o600 for p in outbox.glob("*.eml"))
    app.close()


def test_an_older_world_readable_store_is_made_private(tmp_path: Path, project_dir: Path,
                                                       clock: FakeClock,
                                                       open_umask: None) -> None:
    database = tmp_path / "comms.db"
    App(load_settings(project_dir, database_url=f"sqlite:///{database}"),
        clock=clock).store.dispose()
    database.chmod(0o644)
    App(load_settings(project_dir, database_url=f"sqlite:///{database}"),
        clock=clock).store.dispose()
    assert mode(database) == 0o600
