"""The store: one SQLAlchemy engine (SQLite by default, PostgreSQL by URL), migrated on open."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import StoreError
from ..keys import Keys

Conn = Connection  # what the store's transactions hand out, named for modules outside the store
HEAD = "0013"  # the newest migration; tests check it against migrations/versions
_MIGRATIONS = Path(__file__).parent / "migrations"


class Store:
    """Owns the engine; ``write()`` and ``read()`` hand out connections in a transaction."""

    def __init__(self, url: str, *, migrate: bool = True, keys: Keys | None = None) -> None:
        self.url = url
        self.keys = keys or Keys.ephemeral()
        try:
            _private(url)
            self.engine = _engine(url)
            if migrate:
                self.migrate()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store {_safe(url)}: {_reason(exc)}") from None

    @classmethod
    def in_memory(cls) -> Store:
        """An empty SQLite store in memory: pre-flight's scratch."""
        return cls("sqlite://")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite, so writers queue instead of failing)."""
        with self._transaction("write") as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: any write inside it raises :class:`StoreError` (SQLite's
        ``query_only``, PostgreSQL's ``READ ONLY``), so what only looks can never change anything."""
        with self._transaction("read") as conn:
            yield conn

    @contextmanager
    def scratch(self) -> Iterator[Connection]:
        """A transaction that is always rolled back: for work tables (reports) that must leave
        nothing behind."""
        with self._transaction("scratch") as conn:
            yield conn

    @contextmanager
    def _transaction(self, mode: str) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(comms_mode=mode)
                transaction = conn.begin()
                try:
                    yield conn
                except BaseException:
                    transaction.rollback()
                    raise
                if mode == "write":
                    transaction.commit()
                else:
                    transaction.rollback()
        except DBAPIError as exc:
            raise StoreError(f"store error: {_reason(exc)}") from None

    def migrate(self) -> None:
        """Bring the schema to HEAD (cheap when it already is). An empty database is created
        from ``tables`` (which the migrations are tested to equal) and stamped HEAD, without the
        migration machinery; an older one is upgraded. Processes starting together take turns:
        the first migrates, the others find HEAD."""
        if _version(self.engine) == HEAD:
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(comms_mode="write")
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7402163910)"))
                found = inspect(conn)
                if found.has_table("alembic_version") and _version_in(conn) == HEAD:
                    return
                if not found.get_table_names():
                    _create(conn)
                else:
                    upgrade(conn, self.keys)

    def secret(self, name: str) -> str:
        """A key for one purpose (address hashing), derived from the secret key this store was
        opened with: nothing of it is stored in the database."""
        return self.keys.derived(name).hex()

    def dispose(self) -> None:
        self.engine.dispose()


def upgrade(conn: Connection, keys: Keys) -> None:
    """Run the migrations from the database's revision to HEAD, in ``conn``'s transaction."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = conn
    config.attributes["keys"] = keys  # for migrations that re-key data
    command.upgrade(config, "head")


def _create(conn: Connection) -> None:
    """The schema at HEAD in an empty database, as ``alembic stamp head`` would leave it."""
    from . import tables

    tables.metadata.create_all(conn)
    conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                      "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
    conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": HEAD})


def _version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _version_in(conn)


def _version_in(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        _begin_by_mode(engine)
        return engine
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    _begin_by_mode(engine)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten (erasure)
        # SQLite's own page cache (2 MB a connection), temp files and no memory-mapped reads:
        # a 64 MB cache, temp tables in memory and a 256 MB map made no report faster (100,000
        # people, 1,000,000 responses: 5-6 s either way) and kept a large store in memory.
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def _begin_by_mode(engine: Engine) -> None:
    """Start each transaction as its mode says: SQLite writers take the write lock at once
    (``BEGIN IMMEDIATE``) and readers are ``query_only``; PostgreSQL readers are ``READ ONLY``."""
    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("comms_mode", "scratch")
        if sqlite:  # (a query_only connection could not even BEGIN IMMEDIATE: set it first)
            conn.exec_driver_sql(f"PRAGMA query_only={int(mode == 'read')}")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "write" else "BEGIN")
        elif mode == "read":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")


def _private(url: str) -> None:
    """A SQLite store's files readable by their owner only: the database is made mode 600
    before SQLite opens it (its -wal and -shm take the database's mode), older ones chmod-ed."""
    if not url.startswith("sqlite:///"):
        return
    database = url.removeprefix("sqlite:///").partition("?")[0]
    if not database or database == ":memory:":
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))  # an empty file is a new db
    except OSError:
        return  # SQLite names the problem when it opens it
    for suffix in ("", "-wal", "-shm"):
        path = Path(database + suffix)
        if path.exists():
            path.chmod(0o600)


def _safe(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]
