"""The web app attacked from outside: every bad request a 4xx, trusted hosts only, no slash
redirects, security headers on every response, tokens never in URLs for reports, a minimal
/healthz, and a deadline for headers (slowloris)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from comms import web
from comms.app import App
from comms.web import create_app
from tests.test_web import links, make_app
from tests.tracking.test_webhook import Signer

from ..conftest import FakeClock
from .conftest import PUBLIC, snapshot

REPORT_TOKEN = "a-report-token-of-at-least-32-characters"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
                    "referrer-policy": "no-referrer"}
HSTS = "strict-transport-security"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


@pytest.fixture
def app(project_dir: Path, store_url: str, clock: FakeClock, signer: Signer) -> Iterator[App]:
    app = make_app(project_dir, store_url, clock, report_token=REPORT_TOKEN,
                   sendgrid_webhook_public_key=signer.public)
    yield app
    app.close()


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_app(app), base_url=app.settings.base_url,
                    raise_server_exceptions=False) as client:
        yield client


def token(app: App, kind: str = "accepted") -> str:
    return next(iter(links(app).values()))[kind]


@pytest.mark.parametrize("path", ["/rsvp/%C3%A9.a", "/u/%C3%A9.a", "/rsvp/%E2%80%AE.x",
                                  "/u/%00", "/rsvp/%FF%FE", "/rsvp/" + "a" * 5000])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tokens_that_are_not_ascii_are_400(app: App, client: TestClient, path: str,
                                          method: str) -> None:
    before = snapshot(app.store)
    answer = client.request(method, path)
    assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
    assert snapshot(app.store) == before


def test_a_signed_webhook_body_nested_too_deep_is_400(app: App, client: TestClient,
                                                      signer: Signer) -> None:
    before = snapshot(app.store)
    ts = int(app.clock.now().timestamp())
    for body in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"[1,2,",
                 b"\xff\xfe[]", b'[{"event": "open", "send_id": ' + b"[" * 10_000 + b"]}]"):
        answer = client.post("/webhooks/sendgrid", content=body, headers=signer.headers(body, ts))
        assert answer.status_code == 400, (body[:20], answer.status_code)
    assert snapshot(app.store) == before


def test_other_hosts_are_refused_and_never_reflected(client: TestClient, app: App) -> None:
    rsvp = token(app)
    for path in (f"/rsvp/{rsvp}/", f"/rsvp/{rsvp}", "/healthz", "/nowhere/"):
        answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert answer.status_code == 400, path
        assert "evil.example" not in answer.text and "location" not in answer.headers


def test_no_slash_redirects(client: TestClient, app: App) -> None:
    rsvp = token(app)
    for path in (f"/rsvp/{rsvp}/", "/healthz/", "/reports/", f"/u/{token(app, 'unsubscribe')}/"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 404, path
        assert "location" not in answer.headers
        assert rsvp not in answer.text


def test_reports_take_their_token_only_in_the_authorization_header(client: TestClient) -> None:
    in_url = client.get(f"/reports?token={REPORT_TOKEN}")
    assert in_url.status_code == 401 and REPORT_TOKEN not in in_url.text
    assert client.get("/reports", headers={"Authorization": f"Bearer {REPORT_TOKEN}x"}
                      ).status_code == 403
    assert client.get("/reports", headers={"Authorization": f"Bearer {REPORT_TOKEN}"}
                      ).status_code == 200


def test_a_short_report_token_turns_reports_off(project_dir: Path, store_url: str,
                                                clock: FakeClock) -> None:
    short = "only-twenty-characte"
    app = make_app(project_dir, store_url, clock, report_token=short)
    with TestClient(create_app(app), base_url=app.settings.base_url) as client:
        answer = client.get("/reports", headers={"Authorization": f"Bearer {short}"})
        assert answer.status_code != 200 and "campaign" not in answer.text.lower()
        health = client.get("/healthz", headers={"Authorization": f"Bearer {short}"}).json()
        assert set(health) == {"status", "version"}
    app.close()


def test_healthz_says_ok_and_the_version_unless_the_report_token_is_given(
        client: TestClient) -> None:
    public = client.get("/healthz")
    assert public.status_code == 200
    assert set(public.json()) == {"status", "version"} and public.json()["status"] == "ok"
    assert "nmdi" not in public.text and "workshops" not in public.text
    private = client.get("/healthz", headers={"Authorization": f"Bearer {REPORT_TOKEN}"})
    assert {"next", "last_run", "paused"} <= set(private.json())


def responses_of_every_kind(client: TestClient, app: App, signer: Signer,
                            monkeypatch: pytest.MonkeyPatch) -> dict[str, httpx.Response]:
    rsvp = token(app)
    found = {
        "page": client.get(f"/rsvp/{rsvp}"),
        "json": client.get("/healthz"),
        "json refusal": client.post("/webhooks/sendgrid", content=b"[]"),
        "bad token": client.post("/rsvp/not-a-token"),
        "not found": client.get("/nowhere"),
        "method": client.put("/healthz"),
        "host": client.get("/healthz", headers={"Host": "evil.example"}),
        "report": client.get("/reports", headers={"Authorization": f"Bearer {REPORT_TOKEN}"}),
    }
    monkeypatch.setattr(app.rsvps, "seats_left", _explode)
    found["500"] = client.get(f"/rsvp/{rsvp}")
    assert found["500"].status_code == 500
    return found


def _explode(*args: Any) -> None:
    raise RuntimeError("a bug")


def test_every_response_carries_the_security_headers_and_hsts_over_https(
        project_dir: Path, store_url: str, clock: FakeClock, signer: Signer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(project_dir, store_url, clock, report_token=REPORT_TOKEN,
                   sendgrid_webhook_public_key=signer.public, base_url=PUBLIC)
    with TestClient(create_app(app), base_url=PUBLIC, raise_server_exceptions=False) as client:
        for kind, answer in responses_of_every_kind(client, app, signer, monkeypatch).items():
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers.get(name) == value, (kind, name)
            assert "content-security-policy" in answer.headers, kind
            assert answer.headers[HSTS].startswith("max-age="), kind
            assert "a bug" not in answer.text
    app.close()


def test_no_hsts_over_plain_http(app: App, client: TestClient, signer: Signer,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, answer in responses_of_every_kind(client, app, signer, monkeypatch).items():
        assert answer.headers.get("x-content-type-options") == "nosniff", kind
        assert HSTS not in answer.headers, kind


# --- slowloris ---------------------------------------------------------------------------------

def test_a_client_that_trickles_its_headers_is_dropped(app: App,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections that never finish their headers are closed by the server after the header
    deadline (shortened here), and the server still answers others."""
    monkeypatch.setattr(web, "HEADER_TIMEOUT", 0.5)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = web.server(app, host="127.0.0.1", port=port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(50)]
        for conn in slow:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        for conn in slow:  # the server closes each: recv sees the end (or a reset)
            try:
                assert conn.recv(1024) == b""
            except ConnectionResetError:
                pass
            conn.close()
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.status_code == 200 and json.loads(answer.text)["status"] == "ok"
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()
