"""Shared fixtures: an example project copy, a simulated clock, stores on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PARTS = ("campaigns", "templates", "schedules", "stakeholders", "pairs")
REQUIRE_ALL = os.environ.get("COMMS_TEST_REQUIRE_ALL") == "1"

# Property tests draw the same examples on every run and keep no example database: a run can
# neither fail by chance nor replay an old failure from a previous checkout's files.
hypothesis_settings.register_profile("comms", derandomize=True, database=None)
hypothesis_settings.load_profile("comms")


def need(condition: bool, reason: str) -> None:
    """Skip when a real part is missing here; in CI (COMMS_TEST_REQUIRE_ALL=1) fail instead."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required test part missing: {reason}")
        pytest.skip(reason)


class FakeClock:
    """Time that moves only when told to (or when something sleeps or waits). Timers
    (``every``) fire at their times as time moves past them, in the thread that moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        self.slept: list[float] = []
        self._timers: list[_FakeTimer] = []
        self._lock = threading.RLock()

    def now(self) -> datetime:
        return self.current

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._move(self.current + timedelta(seconds=seconds))

    def wait(self, seconds: float, event: threading.Event) -> bool:
        if event.is_set():
            return True
        self.sleep(seconds)
        return event.is_set()

    def every(self, seconds: float, call: Callable[[], None]) -> _FakeTimer:
        timer = _FakeTimer(self, seconds, call)
        with self._lock:
            self._timers.append(timer)
        return timer

    def advance(self, **delta: float) -> None:
        self._move(self.current + timedelta(**delta))

    def _move(self, to: datetime) -> None:
        with self._lock:
            while True:
                due = [t for t in self._timers if t.next <= to]
                if not due:
                    break
                timer = min(due, key=lambda t: t.next)
                self.current = max(self.current, timer.next)
                timer.next += timedelta(seconds=timer.seconds)
                timer.call()
            self.current = max(self.current, to)


class _FakeTimer:
    def __init__(self, clock: FakeClock, seconds: float, call: Callable[[], None]) -> None:
        self.clock, self.seconds, self.call = clock, seconds, call
        self.next = clock.current + timedelta(seconds=seconds)

    def stop(self) -> None:
        with self.clock._lock:
            if self in self.clock._timers:
                self.clock._timers.remove(self)


@pytest.fixture(autouse=True)
def fixed_random_uid_parts(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events' UIDs carry a random part; tests know it in advance (0e0e…, as in
    ``workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example``) unless marked ``random_uids``."""
    if request.node.get_closest_marker("random_uids") is None:
        monkeypatch.setattr("comms.store.events._uid_part", lambda: "0e0e0e0e0e0e0e0e")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A private copy of the example programme at the repository root."""
    target = tmp_path / "project"
    target.mkdir()
    for part in PROJECT_PARTS:
        shutil.copytree(ROOT / part, target / part)
    return target


def only_new_stakeholders(project_dir: Path) -> None:
    """Empty the example's directory for a test's own people: the mentoring pairs, which
    name the example's people, their campaign and the steering pack reporting on it go too."""
    for old in (project_dir / "stakeholders").iterdir():
        old.unlink()
    shutil.rmtree(project_dir / "pairs")
    for campaign in ("mentoring", "steering-pack"):
        (project_dir / "campaigns" / f"{campaign}.yaml").unlink()


def _postgres_url() -> str | None:
    return os.environ.get("COMMS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store: SQLite in a temp dir, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'comms.db'}"
        return
    yield from _postgres_schema()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema (for tests that only make sense there)."""
    yield from _postgres_schema()


def _postgres_schema() -> Iterator[str]:
    base = _postgres_url()
    need(base is not None, "COMMS_TEST_POSTGRES_URL is not set")
    assert base is not None
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = base.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    cert_file: Path  # to trust it where a default context is used (SSL_CERT_FILE)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return Tls(server=server, client=client, cert_file=cert_file)
