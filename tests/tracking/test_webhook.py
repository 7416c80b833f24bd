"""SendGrid's Event Webhook: signatures, dedupe, order-free delivery states, suppression, failures."""

from __future__ import annotations

import base64
import json
import logging
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import func, insert, select, text
from starlette.testclient import TestClient

from comms.app import App
from comms.settings import load_settings
from comms.store import Store, tables
from comms.suppression import AddressHasher
from comms.tracking import ingest as ingesting
from comms.tracking.providers.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRefused,
    parse_events,
    verify,
)
from comms.web import create_app

from ..conftest import FakeClock

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
T0 = int(NOW.timestamp()) - 3600  # the stream starts an hour before it arrives

# uid: (address, status before any event)
SENDS = {
    "send-a": ("ada.obi@gp-a.nhs.example", "sent"),
    "send-b": ("ben.ray@gp-b.nhs.example", "sent"),
    "send-c": ("cat.lee@gp-c.nhs.example", "sent"),
    "send-d": ("dev.rao@gp-d.nhs.example", "sent"),
    "send-e": ("eve.kim@gp-e.nhs.example", "sent"),
    "send-f": ("fin.roe@gp-f.nhs.example", "sent"),
    "send-g": ("gus.may@gp-g.nhs.example", "uncertain"),
    "send-h": ("hal.fox@gp-h.nhs.example", "uncertain"),
}


def event(word: str, uid: str | None, minute: int, n: int, **extra: Any) -> dict[str, Any]:
    """One event as SendGrid posts it, our custom arg ``send_id`` at the top level."""
    found = {"email": SENDS[uid][0] if uid in SENDS else "someone@elsewhere.example",
             "timestamp": T0 + 60 * minute, "event": word, "sg_event_id": f"ev{n:04d}-{word}",
             "sg_message_id": f"msg-{uid}.filter0001.1.0", "category": ["nmdi-awareness"],
             **extra}
    if uid is not None:
        found["send_id"] = uid
    return found


def recorded_stream() -> list[dict[str, Any]]:
    """A realistic stream, in the order things happened."""
    spec: list[tuple[str, str | None, int, dict[str, Any]]] = [
        ("processed", "send-a", 0, {}), ("delivered", "send-a", 1, {}),
        ("open", "send-a", 2, {"sg_machine_open": True}), ("open", "send-a", 30,
                                                          {"sg_machine_open": False}),
        ("click", "send-a", 31, {"url": "https://nmdi.example/register"}),
        ("click", "send-a", 32, {"url": "https://nmdi.example/faq"}),
        ("processed", "send-b", 0, {}), ("deferred", "send-b", 1, {"attempt": "1"}),
        ("deferred", "send-b", 6, {"attempt": "2"}), ("delivered", "send-b", 12, {}),
        ("open", "send-b", 40, {"sg_machine_open": False}), ("unsubscribe", "send-b", 41, {}),
        ("processed", "send-c", 0, {}), ("deferred", "send-c", 2, {}),
        ("bounce", "send-c", 3, {"type": "bounce", "status": "5.1.1", "reason": "no such user"}),
        ("processed", "send-d", 0, {}),
        ("bounce", "send-d", 1, {"type": "blocked", "status": "4.7.1", "reason": "try later"}),
        ("processed", "send-e", 0, {}), ("delivered", "send-e", 1, {}),
        ("open", "send-e", 5, {"sg_machine_open": False}), ("unsubscribe", "send-e", 6, {}),
        ("spamreport", "send-e", 7, {}),
        ("dropped", "send-f", 0, {"reason": "Bounced Address"}),
        ("processed", "send-g", 0, {}), ("delivered", "send-g", 1, {}),
        ("group_unsubscribe", "send-g", 20, {"asm_group_id": 7}),
        ("group_resubscribe", "send-g", 25, {"asm_group_id": 7}),
        ("delivered", None, 3, {}),  # another sender on the same SendGrid account
        ("delivered", "send-zz", 4, {}),  # a send we do not hold
        ("account_status_change", "send-a", 5, {}),  # a word we do not know
    ]
    return [event(word, uid, minute, n, **extra) for n, (word, uid, minute, extra) in enumerate(spec)]


STREAM = recorded_stream()


# --- helpers -----------------------------------------------------------------------------------

def add_sends(store: Store) -> None:
    with store.write() as conn:
        for i, (uid, (address, status)) in enumerate(SENDS.items()):
            person = conn.execute(insert(tables.stakeholders).values(
                email=address, display_email=address, updated_at=NOW)).inserted_primary_key[0]
            conn.execute(insert(tables.sends).values(
                uid=uid, campaign="nmdi-awareness", step="launch", occurrence="once",
                stakeholder_id=person, status=status, created_at=NOW,
                claimed_at=NOW - timedelta(hours=2),
                sent_at=None if status == "uncertain" else NOW - timedelta(hours=1, minutes=i)))


def state(store: Store) -> dict[str, Any]:
    """Everything the webhook may change: sends, responses, the suppression list."""
    s, r, sup = tables.sends, tables.responses, tables.suppressions
    with store.read() as conn:
        sends = {row.uid: (row.status, row.delivery, row.delivery_at, row.sent_at)
                 for row in conn.execute(select(s))}
        responses = sorted(
            (row.provider_event_id, row.uid, row.kind, row.detail, row.machine, row.occurred_at,
             row.raw) for row in conn.execute(
                select(r, s.c.uid).join(s, s.c.id == r.c.send_id)))
        suppressed = {row.email: (row.reason, row.source) for row in conn.execute(select(sup))}
    kinds = Counter(row[2] for row in responses)
    return {"sends": sends, "responses": responses, "kinds": kinds, "suppressed": suppressed}


def count(store: Store, table: str = "responses") -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(tables.metadata.tables[table]))
                   .scalar_one())


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = Store(store_url)
    add_sends(store)
    yield store
    store.dispose()


def ingest(store: Store, batch: list[Any], *, now: datetime,
           hasher: AddressHasher) -> ingesting.IngestResult:
    """SendGrid's events, parsed by the provider and stored by ingest, as the endpoint does."""
    return ingesting.ingest(store, parse_events(batch), now=now, hasher=hasher)


def run(store: Store, *batches: list[dict[str, Any]], now: datetime = NOW) -> None:
    hasher = AddressHasher(store)
    for batch in batches:
        ingest(store, batch, now=now, hasher=hasher)


# --- signatures --------------------------------------------------------------------------------

class Signer:
    """A test key pair in SendGrid's formats: base64 DER public key, base64 DER signatures."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def sign(self, body: bytes, timestamp: str) -> str:
        der = self.private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | str) -> dict[str, str]:
        ts = str(timestamp)
        return {SIGNATURE_HEADER: self.sign(body, ts), TIMESTAMP_HEADER: ts,
                "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def flipped(value: str, i: int) -> str:
    return value[:i] + chr(ord(value[i]) ^ 1) + value[i + 1:]


def test_verify_accepts_what_sendgrids_helper_accepts(signer: Signer) -> None:
    body = json.dumps(STREAM[:3]).encode()
    ts = str(int(NOW.timestamp()))
    sig = signer.sign(body, ts)
    assert EventWebhook(signer.public).verify_signature(body.decode(), sig, ts)
    verify(signer.public, body, sig, ts, now=NOW)
    verify(signer.public, body, sig, ts, now=NOW + timedelta(minutes=5))  # the edge of the window


def test_verify_refuses_every_flipped_byte_bit_and_character(signer: Signer) -> None:
    body = json.dumps(STREAM[:2]).encode()
    ts = str(int(NOW.timestamp()))
    sig = signer.sign(body, ts)
    for i in range(len(body)):
        for bit in range(8):
            changed = body[:i] + bytes([body[i] ^ (1 << bit)]) + body[i + 1:]
            with pytest.raises(WebhookRefused, match="bad signature"):
                verify(signer.public, changed, sig, ts, now=NOW)
    for i in range(len(sig)):
        for bit in range(7):
            bad = sig[:i] + chr(ord(sig[i]) ^ (1 << bit)) + sig[i + 1:]
            with pytest.raises(WebhookRefused, match="signature"):
                verify(signer.public, body, bad, ts, now=NOW)
    for i in range(len(ts)):
        with pytest.raises(WebhookRefused):
            verify(signer.public, body, sig, flipped(ts, i), now=NOW)


@pytest.mark.parametrize(("signature", "timestamp", "now", "reason"), [
    (None, None, NOW, "unsigned request"),
    ("", "", NOW, "unsigned request"),
    ("x", None, NOW, "unsigned request"),
    ("not base64!", "T", NOW, "malformed signature"),
    ("SIG", "1_796_115_600", NOW, "malformed timestamp"),
    ("SIG", " 1796115600", NOW, "malformed timestamp"),
    ("SIG", "T", NOW + timedelta(minutes=5, seconds=1), "stale timestamp"),
    ("SIG", "T", NOW - timedelta(minutes=5, seconds=1), "timestamp in the future"),
])
def test_verify_refuses_unsigned_malformed_stale_and_future(
        signer: Signer, signature: str | None, timestamp: str | None, now: datetime,
        reason: str) -> None:
    body = b"[]"
    ts = str(int(NOW.timestamp()))
    signature = signer.sign(body, ts) if signature == "SIG" else signature
    timestamp = ts if timestamp == "T" else timestamp
    with pytest.raises(WebhookRefused) as refused:
        verify(signer.public, body, signature, timestamp, now=now)
    assert refused.value.reason == reason


def test_a_malformed_key_is_refused_with_the_fix() -> None:
    with pytest.raises(WebhookRefused, match="not base64 DER.*Mail Settings"):
        verify("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", b"[]", "x", "1", now=NOW)
    rsa = base64.b64encode(bytes.fromhex(
        "305c300d06092a864886f70d0101010500034b003048024100c0ffee" + "00" * 61 + "0203010001"))
    with pytest.raises(WebhookRefused, match="not base64 DER|not an ECDSA P-256 key"):
        verify(rsa.decode(), b"[]", "x", "1", now=NOW)


# --- the endpoint ------------------------------------------------------------------------------

def make_app(project_dir: Path, store_url: str, clock: FakeClock, **flags: Any) -> App:
    app = App(load_settings(project_dir, database_url=store_url, **flags), clock=clock)
    add_sends(app.store)
    return app


@pytest.fixture
def app(project_dir: Path, store_url: str, clock: FakeClock, signer: Signer) -> Iterator[App]:
    app = make_app(project_dir, store_url, clock, sendgrid_webhook_public_key=signer.public)
    yield app
    app.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        yield client


def post(client: TestClient, signer: Signer, body: bytes, *, timestamp: int | None = None,
         **changes: str) -> Any:
    ts = int(NOW.timestamp()) if timestamp is None else timestamp
    headers = {**signer.headers(body, ts), **changes}
    return client.post("/webhooks/sendgrid", content=body, headers=headers)


def test_a_signed_batch_is_recorded_once_however_often_it_is_posted(
        app: App, client: TestClient, signer: Signer) -> None:
    body = json.dumps(STREAM).encode()
    answer = post(client, signer, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": len(STREAM), "matched": len(STREAM) - 3}
    first = state(app.store)
    assert len(first["responses"]) == len(STREAM) - 3
    assert post(client, signer, body).status_code == 200  # SendGrid's retry of the same batch
    assert state(app.store) == first


def test_every_flipped_byte_stale_and_unsigned_posts_get_403_and_write_nothing(
        app: App, client: TestClient, signer: Signer) -> None:
    body = json.dumps(STREAM[:2]).encode()
    ts = str(int(NOW.timestamp()))
    headers = signer.headers(body, ts)
    sig = headers[SIGNATURE_HEADER]
    refused: Counter[int] = Counter()

    def send(content: bytes, **changed: str) -> None:
        answer = client.post("/webhooks/sendgrid", content=content, headers={**headers, **changed})
        refused[answer.status_code] += 1

    for i in range(len(body)):
        send(body[:i] + bytes([body[i] ^ 1]) + body[i + 1:])
    for i in range(len(sig)):
        send(body, **{SIGNATURE_HEADER: flipped(sig, i)})
    for i in range(len(ts)):
        send(body, **{TIMESTAMP_HEADER: flipped(ts, i)})
    for stale in (int(ts) - 301, int(ts) + 301):
        send(body, **signer.headers(body, stale))
    answer = client.post("/webhooks/sendgrid", content=body)  # unsigned
    refused[answer.status_code] += 1
    assert refused == {403: len(body) + len(sig) + len(ts) + 3}
    assert count(app.store) == 0
    assert {uid: row[:3] for uid, row in state_of_sends(app.store).items()} == {
        uid: (status, None, None) for uid, (_, status) in SENDS.items()}
    assert post(client, signer, body).status_code == 200
    assert count(app.store) == 2


def test_oversize_and_malformed_bodies(project_dir: Path, store_url: str, clock: FakeClock,
                                       signer: Signer) -> None:
    app = make_app(project_dir, store_url, clock, sendgrid_webhook_public_key=signer.public,
                   inbound_max_bytes=2000)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        big = json.dumps(STREAM).encode()
        assert len(big) > 2000
        assert post(client, signer, big).status_code == 413
        for body in (b"{not json", b'{"event": "open"}', b"\xff\xfe[]"):
            answer = post(client, signer, body)
            assert answer.status_code == 400, body
            assert "JSON array" in answer.json()["error"]
        assert post(client, signer, b"[]").json() == {"received": 0, "matched": 0}
    assert count(app.store) == 0
    app.close()


def test_without_a_key_the_endpoint_refuses_unless_insecure(
        project_dir: Path, store_url: str, clock: FakeClock, signer: Signer,
        caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(STREAM[:4]).encode()
    app = make_app(project_dir, store_url, clock)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        answer = post(client, signer, body)
        assert answer.status_code == 503
        assert "COMMS_SENDGRID_WEBHOOK_PUBLIC_KEY" in answer.json()["error"]
    assert count(app.store) == 0
    app.close()

    app = App(load_settings(project_dir, database_url=store_url,
                            sendgrid_webhook_public_key="bm90IGEga2V5"), clock=clock)
    with caplog.at_level(logging.WARNING, "comms"), \
            TestClient(create_app(app), base_url=app.settings.base_url) as client:
        assert "not base64 DER" in caplog.text
        assert post(client, signer, body).status_code == 503
    app.close()

    caplog.clear()
    app = App(load_settings(project_dir, database_url=store_url, sendgrid_webhook_insecure=True),
              clock=clock)
    with caplog.at_level(logging.WARNING, "comms"):
        web = create_app(app)
    assert [r.getMessage() for r in caplog.records].count(
        "sendgrid webhook: COMMS_SENDGRID_WEBHOOK_INSECURE is set, so unsigned posts are "
        "accepted: anyone can post events. For local testing only.") == 1
    with TestClient(web, base_url=app.settings.base_url) as client:
        answer = client.post("/webhooks/sendgrid", content=body)
        assert answer.status_code == 200, answer.text
    assert count(app.store) == 4
    app.close()


def test_a_store_failure_answers_503_and_the_retry_is_recorded(
        app: App, client: TestClient, signer: Signer) -> None:
    body = json.dumps(STREAM).encode()
    before = state(app.store)["sends"]
    with app.store.write() as conn:
        conn.execute(text("DROP TABLE responses"))
    answer = post(client, signer, body)
    assert answer.status_code == 503
    assert answer.json() == {"error": "store unavailable, try again"}
    assert state_of_sends(app.store) == before
    assert count(app.store, "suppressions") == 0
    with app.store.write() as conn:  # repaired
        tables.responses.create(conn)
    answer = post(client, signer, body)
    assert answer.status_code == 200, answer.text
    assert count(app.store) == len(STREAM) - 3
    assert state_of_sends(app.store)["send-c"][1] == "bounced"


def state_of_sends(store: Store) -> dict[str, Any]:
    s = tables.sends
    with store.read() as conn:
        return {row.uid: (row.status, row.delivery, row.delivery_at, row.sent_at)
                for row in conn.execute(select(s))}


def test_logs_and_raw_rows_hold_no_secrets_and_logs_no_addresses(
        app: App, client: TestClient, signer: Signer, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(STREAM).encode()
    headers = signer.headers(body, int(NOW.timestamp()))
    with caplog.at_level(logging.DEBUG):
        assert client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 200
        assert post(client, signer, body, **{SIGNATURE_HEADER: "AAAA"}).status_code == 403
    logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("comms", "uvicorn")))
    assert "sendgrid webhook: 30 events, 27 matched, 2 unmatched, 1 unknown" in logs
    assert "refused (bad signature)" in logs
    secrets = [signer.public, headers[SIGNATURE_HEADER], signer.public[40:80]]
    addresses = [address for address, _ in SENDS.values()] + ["someone@elsewhere.example"]
    for secret in secrets + addresses:
        assert secret not in logs
        assert secret.split("@")[0] not in logs
    with app.store.read() as conn:
        raws = list(conn.execute(select(tables.responses.c.raw)).scalars())
    by_id = {e["sg_event_id"]: e for e in STREAM}
    for raw in raws:
        assert all(secret not in raw for secret in secrets)
        assert json.loads(raw) == by_id[json.loads(raw)["sg_event_id"]]  # the event, nothing added


# --- states ------------------------------------------------------------------------------------

def test_the_recorded_stream_gives_the_expected_states(store: Store) -> None:
    result = ingest(store, STREAM + ["not an event", {"event": "open"}], now=NOW,
                    hasher=AddressHasher(store))
    assert (result.received, result.matched, result.unmatched, result.unknown, result.invalid) == (
        len(STREAM) + 2, len(STREAM) - 3, 2, 1, 2)
    got = state(store)
    delivery = {uid: row[:2] for uid, row in got["sends"].items()}
    assert delivery == {
        "send-a": ("sent", "delivered"), "send-b": ("sent", "delivered"),
        "send-c": ("sent", "bounced"), "send-d": ("sent", "bounced"),
        "send-e": ("sent", "spam_reported"), "send-f": ("sent", "dropped"),
        "send-g": ("sent", "delivered"), "send-h": ("uncertain", None)}
    assert got["sends"]["send-b"][2] == datetime.fromtimestamp(T0 + 12 * 60, UTC)
    assert got["sends"]["send-g"][3] == NOW - timedelta(hours=2)  # sent_at: when it was claimed
    assert got["kinds"] == {"processed": 6, "delivered": 4, "deferred": 3, "opened": 4,
                            "clicked": 2, "bounced": 2, "dropped": 1, "unsubscribed": 2,
                            "spam_reported": 1, "group_unsubscribed": 1, "group_resubscribed": 1}
    rows = {row[0]: row for row in got["responses"]}
    assert [rows[e["sg_event_id"]][3:5] for e in STREAM[2:6]] == [
        (None, True), (None, False), ("https://nmdi.example/register", False),
        ("https://nmdi.example/faq", False)]
    assert rows[STREAM[14]["sg_event_id"]][3] == "hard"
    assert rows[STREAM[16]["sg_event_id"]][3] == "soft"
    # soft bounces do not suppress; group_resubscribe leaves our own list alone
    assert got["suppressed"] == {
        "ben.ray@gp-b.nhs.example": ("unsubscribed", "sendgrid"),
        "cat.lee@gp-c.nhs.example": ("bounced", "sendgrid"),
        "eve.kim@gp-e.nhs.example": ("spam", "sendgrid"),
        "gus.may@gp-g.nhs.example": ("unsubscribed", "sendgrid")}


def delivery(store: Store, uid: str) -> str | None:
    return state_of_sends(store)[uid][1]


def test_delivery_only_moves_forward(store: Store) -> None:
    a = "send-a"
    run(store, [event("delivered", a, 5, 1)], [event("processed", a, 1, 2)],
        [event("deferred", a, 2, 3)])
    assert delivery(store, a) == "delivered"
    assert state_of_sends(store)[a][2] == datetime.fromtimestamp(T0 + 300, UTC)
    run(store, [event("bounce", a, 9, 4, type="bounce")])
    assert delivery(store, a) == "bounced"
    run(store, [event("delivered", a, 10, 5), event("processed", a, 11, 6),
                event("dropped", a, 12, 7), event("open", a, 13, 8)])
    assert delivery(store, a) == "bounced"
    run(store, [event("dropped", "send-b", 1, 9)], [event("delivered", "send-b", 2, 10)],
        [event("spamreport", "send-c", 3, 11)], [event("bounce", "send-c", 4, 12, type="bounce"),
                                                 event("delivered", "send-c", 5, 13)])
    assert (delivery(store, "send-b"), delivery(store, "send-c")) == ("dropped", "spam_reported")


def test_an_uncertain_send_that_sendgrid_reports_on_is_sent(store: Store) -> None:
    run(store, [event("delivered", "send-g", 1, 1)])
    assert state_of_sends(store)["send-g"][:2] == ("sent", "delivered")
    run(store, [event("processed", "send-h", 1, 2)])
    assert state_of_sends(store)["send-h"][:2] == ("sent", "processed")
    assert state_of_sends(store)["send-a"][:2] == ("sent", None)


def shuffled_batches(rng: random.Random) -> list[list[dict[str, Any]]]:
    copies = [e for e in STREAM for _ in range(rng.randint(1, 46))]
    rng.shuffle(copies)
    batches = []
    while copies:
        size = rng.randint(1, 200)
        batches.append(json.loads(json.dumps(copies[:size])))
        copies = copies[size:]
    return batches


def clean_then_reset(store: Store) -> dict[str, Any]:
    """The state after the clean stream; then the store as it was before it."""
    run(store, STREAM)
    expected = state(store)
    with store.write() as conn:
        for table in ("responses", "suppressions", "sends", "stakeholders"):
            conn.execute(tables.metadata.tables[table].delete())
    add_sends(store)
    return expected


def test_duplicated_shuffled_batches_give_the_clean_result(store: Store) -> None:
    expected = clean_then_reset(store)
    run(store, *shuffled_batches(random.Random(5)))
    assert state(store) == expected


def test_concurrent_batches_give_the_clean_result(store: Store) -> None:
    """SendGrid posts from several servers at once: overlapping batches from four threads."""
    expected = clean_then_reset(store)
    hasher = AddressHasher(store)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda batch: ingest(store, batch, now=NOW, hasher=hasher),
                      shuffled_batches(random.Random(11))))
    assert state(store) == expected


# --- the property ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite store holding the sends and its address-hash key, copied per example."""
    path = tmp_path_factory.mktemp("template") / "comms.db"
    store = Store(f"sqlite:///{path}")
    add_sends(store)
    AddressHasher(store)
    store.dispose()
    return path


@contextmanager
def copy_of(template: Path) -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "comms.db"
        shutil.copyfile(template, path)
        store = Store(f"sqlite:///{path}")
        try:
            yield store
        finally:
            store.dispose()


@pytest.fixture(scope="module")
def clean_state(template: Path) -> dict[str, Any]:
    with copy_of(template) as store:
        run(store, STREAM)
        return state(store)


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """The stream with each event sent 1–46 times, shuffled, regrouped into batches."""
    copies = draw(st.lists(st.integers(1, 46), min_size=len(STREAM), max_size=len(STREAM)))
    events = [e for e, n in zip(STREAM, copies, strict=True) for _ in range(n)]
    order = draw(st.permutations(range(len(events))))
    cuts = sorted(draw(st.sets(st.integers(1, len(events) - 1), max_size=20)))
    shuffled = [events[i] for i in order]
    bounds = [0, *cuts, len(events)]
    return [json.loads(json.dumps(shuffled[a:b])) for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(batches=deliveries())
def test_duplicates_order_and_batching_do_not_matter(
        template: Path, clean_state: dict[str, Any], batches: list[list[dict[str, Any]]]) -> None:
    with copy_of(template) as store:
        run(store, *batches)
        assert state(store) == clean_state
