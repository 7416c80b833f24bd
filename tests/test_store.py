"""The store: migrations applied automatically and equal to the table definitions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from comms.errors import StoreError
from comms.store import HEAD, Store, upgrade
from comms.store.tables import metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "comms" / "store" / "migrations"


def test_head_constant_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_migrations_create_exactly_the_tables(store_url: str) -> None:
    store = Store(store_url, migrate=False)
    with store.engine.connect() as conn:
        conn = conn.execution_options(comms_mode="write")
        with conn.begin():
            upgrade(conn, store.keys)  # every migration, from an empty database
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    assert diff == []
    store.dispose()


def test_a_new_store_is_created_at_head_without_running_the_migrations(store_url: str) -> None:
    """An empty database gets the tables and the HEAD stamp directly (no Alembic import on the
    first send of a project); it is the schema the migrations make."""
    store = Store(store_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(HEAD,)]
    assert diff == []
    store.dispose()
    code = ("import sys; from comms.store import Store; Store(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    other = store_url.replace("comms.db", "other.db") if store_url.startswith("sqlite") else None
    if other is not None:
        shown = subprocess.run([sys.executable, "-c", code, other], capture_output=True,
                               text=True, check=True).stdout
        assert shown.strip() == "[]"


def test_migration_runs_once(store_url: str) -> None:
    Store(store_url).dispose()
    store = Store(store_url)  # a second open finds HEAD and does nothing
    assert store.secret("x") == store.secret("x")
    store.dispose()


def test_unreachable_database_is_one_clear_line_without_password() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql://comms:hunter2@127.0.0.1:1/comms")
    text = str(info.value)
    assert "hunter2" not in text and "\n" not in text
    assert text.startswith("cannot open the store postgresql://comms:***@127.0.0.1:1/comms: ")
    assert "Connection refused" in text


def test_a_write_inside_a_read_transaction_raises_and_changes_nothing(store_url: str) -> None:
    from sqlalchemy import func, insert, select

    from comms.store import meta, tables

    store = Store(store_url)
    for write in (lambda conn: conn.execute(insert(tables.meta).values(key="k", value="v")),
                  lambda conn: meta.put(conn, "k", "v"),
                  lambda conn: conn.exec_driver_sql("DELETE FROM meta")):
        with pytest.raises(StoreError, match="read"), store.read() as conn:
            write(conn)
    with store.write() as conn:  # the same pooled connections write again afterwards
        meta.put(conn, "after", "yes")
    with store.read() as conn:
        assert meta.get(conn, "after") == "yes"
        assert conn.execute(select(func.count()).select_from(tables.meta)
                            .where(tables.meta.c.key == "k")).scalar_one() == 0
    store.dispose()


def test_scratch_work_tables_leave_nothing_behind(store_url: str) -> None:
    from sqlalchemy import Column, Integer, MetaData, Table, insert, inspect

    store = Store(store_url)
    work = Table("scratch_work", MetaData(), Column("n", Integer), prefixes=["TEMPORARY"])
    with store.scratch() as conn:
        work.create(conn)
        conn.execute(insert(work).values(n=1))
    with store.read() as conn:
        assert not inspect(conn).has_table("scratch_work")
    store.dispose()
