"""Secrets live outside the data: a real send needs a strong key of its own; the store holds no
key (the address-hash key is derived from the secret key); older keys verify links already sent."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, select

from comms.app import App
from comms.audience import Stakeholder
from comms.keys import Keys, keyed_hash
from comms.privacy import forget_person
from comms.settings import load_settings
from comms.store import Store, tables
from comms.store import meta as stored_meta
from comms.store.stakeholders import sync
from comms.suppression import AddressHasher
from comms.tokens import InvalidToken, Tokens

from ..conftest import FakeClock
from .conftest import PUBLIC, STRONG_KEY, process, production, run

PERSON = "tariq.nowak@bexley-ct.nhs.example"
MIGRATIONS = Path(__file__).resolve().parents[2] / "comms" / "store" / "migrations"


@pytest.mark.parametrize("transport", ["smtp", "sendgrid"])
def test_a_real_send_needs_a_secret_key_of_its_own(project_dir: Path, transport: str) -> None:
    env = {"COMMS_TRANSPORT": transport, "COMMS_BASE_URL": PUBLIC,
           "COMMS_SENDGRID_API_KEY": "SG.test", "COMMS_SMTP_HOST": "127.0.0.1"}
    for command_line in (["validate"], ["send", "nmdi-awareness"], ["run"]):
        result = run(*command_line, "--project", str(project_dir), env=env)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("settings: COMMS_SECRET_KEY is not set: "), result.output


WEAK = ["a", "password", "0123456789abcdef0123456789abcdef",  # 32 hex digits: 128 bits
        "k3Yq0X5w9fM2rT8vLz1aN6pB4sD7gH0",  # 31 base64url characters: 186 bits
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]


@pytest.mark.parametrize("key", WEAK)
def test_a_weak_key_is_refused_whatever_the_transport(project_dir: Path, key: str) -> None:
    for env in ({"COMMS_SECRET_KEY": key},  # the outbox too: a key that is set must be strong
                production(COMMS_TRANSPORT="smtp", COMMS_SECRET_KEY=key),
                production(COMMS_SECRET_KEY_FALLBACKS=f"{STRONG_KEY[::-1]},{key}")):
        result = run("validate", "--project", str(project_dir), env=env)
        assert result.exit_code == 2, (env, result.output)
        assert "is too weak" in result.output
        assert len(key) < 8 or key not in result.output  # never echoed


def test_the_outbox_default_keeps_its_key_in_a_file_of_its_own(project_dir: Path) -> None:
    """No key set: one is generated into comms.db.key (mode 600); the store holds none."""
    done = process("send", "nmdi-awareness", "--project", str(project_dir))
    assert done.returncode == 0, done.stderr
    key_file = project_dir / "comms.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 43
    keys = Keys(key)
    secrets = [key, keys.derived("address-hash").hex()]
    with sqlite3.connect(project_dir / "comms.db") as db:
        stored = db.execute("SELECT key, value FROM meta").fetchall()
    assert not any(name.startswith(("secret:", "legacy:")) for name, _ in stored)
    raw = b"".join(p.read_bytes() for p in project_dir.glob("comms.db*") if p != key_file)
    assert not any(s.encode() in raw for s in secrets)
    again = process("send", "nmdi-awareness", "--project", str(project_dir))  # same key again
    assert again.returncode == 0 and key_file.read_text().strip() == key


def test_the_store_alone_reidentifies_no_one_erased(project_dir: Path, tmp_path: Path,
                                                    clock: FakeClock) -> None:
    """With the database file and the directory CSV but not the secret key, hashing every
    address under anything the database holds matches no erased person's hash."""
    database = tmp_path / "comms.db"
    app = App(load_settings(project_dir, database_url=f"sqlite:///{database}",
                            secret_key=STRONG_KEY), clock=clock)
    app.sync_directory()
    forget_person(app.store, PERSON, now=clock.now(), outbox=app.settings.resolved_outbox_dir)
    app.close()
    with sqlite3.connect(database) as db:
        [(stored_hash,)] = db.execute("SELECT email_hash FROM suppressions").fetchall()
        candidates = [str(v).encode() for row in db.execute("SELECT * FROM meta") for v in row]
    addresses = [line.split(",")[0] for line in
                 (project_dir / "stakeholders" / "sel-directory.csv").read_text().splitlines()[1:]]
    assert PERSON in addresses
    assert not any(keyed_hash(key, address) == stored_hash
                   for key in [b"", *candidates] for address in addresses)
    assert keyed_hash(Keys(STRONG_KEY).derived("address-hash").hex().encode(),
                      PERSON) == stored_hash  # the secret key is what it takes


def test_older_keys_still_verify_links_already_sent() -> None:
    old, new = STRONG_KEY, STRONG_KEY[::-1]
    expires = datetime(2027, 2, 1, tzinfo=UTC)
    sent = Tokens(old, PUBLIC).rsvp_url("send-1", "accepted", expires).rsplit("/", 1)[1]
    rotated = Tokens(new, PUBLIC, fallbacks=(old,))
    assert rotated.read_rsvp(sent, expires - timedelta(days=1)) == ("send-1", "accepted")
    fresh = rotated.rsvp_url("send-1", "declined", expires).rsplit("/", 1)[1]
    with pytest.raises(InvalidToken):  # new links are signed with the new key only
        Tokens(old, PUBLIC).read_rsvp(fresh, expires - timedelta(days=1))
    with pytest.raises(InvalidToken):  # once the old key is dropped, its links are dead
        Tokens(new, PUBLIC).read_rsvp(sent, expires - timedelta(days=1))


def test_rotation_through_the_settings(project_dir: Path, store_url: str, clock: FakeClock) -> None:
    old, new = STRONG_KEY, STRONG_KEY[::-1]
    before = App(load_settings(project_dir, database_url=store_url, secret_key=old), clock=clock)
    link = before.tokens.unsubscribe_url("send-9").rsplit("/", 1)[1]
    after = App(load_settings(project_dir, database_url=store_url, secret_key=new,
                              secret_key_fallbacks=old), clock=clock)
    assert after.tokens.read_unsubscribe(link) == "send-9"
    assert after.keys.derived("address-hash") == Keys(new).derived("address-hash")


def test_upgrading_a_store_that_kept_its_keys(tmp_path: Path, clock: FakeClock) -> None:
    """Migration 0008: the keys leave the store; the suppression list is re-keyed, and a person
    erased before the upgrade is still refused on re-import."""
    url = f"sqlite:///{tmp_path / 'comms.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    old_key = "stored-address-hash-key-of-the-old-days-0123456789"
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0007")
        conn.execute(insert(tables.meta), [{"key": "secret:address-hash", "value": old_key},
                                           {"key": "secret:signing", "value": "old-signing"}])
        conn.execute(insert(tables.suppressions), [
            {"email_hash": keyed_hash(old_key.encode(), PERSON), "email": None,
             "reason": "forgotten", "source": "erasure request", "created_at": clock.now()},
            {"email_hash": keyed_hash(old_key.encode(), "ann.lee@gp.nhs.example"),
             "email": "ann.lee@gp.nhs.example", "reason": "unsubscribed", "source": "link",
             "created_at": clock.now()}])
    engine.dispose()
    store = Store(url, keys=Keys(STRONG_KEY))
    hasher = AddressHasher(store)
    with store.read() as conn:
        assert stored_meta.get(conn, "secret:signing") is None
        assert stored_meta.get(conn, "secret:address-hash") is None
        hashes = dict(conn.execute(select(tables.suppressions.c.email,
                                          tables.suppressions.c.email_hash)).all())
    assert hashes["ann.lee@gp.nhs.example"] == hasher("ann.lee@gp.nhs.example")
    assert hashes[None] != keyed_hash(old_key.encode(), PERSON)  # no longer the bare old hash

    person = Stakeholder(email=PERSON, first_name="Tariq", last_name="Nowak", role="manager",
                         organisation="Bexley Care Trust", borough="Bexley", source="csv")
    result = sync(store, [person], now=clock.now())
    assert [p.key for p in result.forgotten] == [PERSON]
    store.dispose()
