"""Dead links: a real send (SMTP or SendGrid) refuses a base URL people's mail clients cannot
reach over HTTPS; the outbox keeps working with the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sinks.smtp_server import SmtpSink

from .conftest import STRONG_KEY, production, run

DEAD = {
    "unset": None,
    "loopback name": "http://localhost:8000",
    "loopback over https": "https://127.0.0.1:8443",
    "plain http": "http://comms.sel-learning.example",
    "ipv6 loopback": "https://[::1]/",
}


@pytest.mark.parametrize("transport", ["smtp", "sendgrid"])
@pytest.mark.parametrize("base_url", DEAD.values(), ids=DEAD.keys())
def test_validate_send_and_run_refuse_dead_links(project_dir: Path, transport: str,
                                                 base_url: str | None) -> None:
    with SmtpSink() as sink:
        env = {"COMMS_TRANSPORT": transport, "COMMS_SECRET_KEY": STRONG_KEY,
               "COMMS_SMTP_HOST": sink.host, "COMMS_SMTP_PORT": str(sink.port),
               "COMMS_SENDGRID_API_KEY": "SG.test-key"}
        if base_url is not None:
            env["COMMS_BASE_URL"] = base_url
        for command in (["validate"], ["send", "nmdi-awareness"], ["run"]):
            result = run(*command, "--project", str(project_dir), env=env)
            assert result.exit_code == 2, (command, result.output)
            lines = result.output.strip().splitlines()
            assert lines[0].startswith("settings: COMMS_BASE_URL "), lines
            assert "Traceback" not in result.output
        assert sink.connections == 0 and not sink.messages
    assert not (project_dir / "comms.db").exists()  # refused before anything was written


def test_the_outbox_works_with_the_default_base_url(project_dir: Path) -> None:
    for command in (["validate"], ["send", "nmdi-awareness"]):
        result = run(*command, "--project", str(project_dir))
        assert result.exit_code == 0, result.output
    assert len(list((project_dir / "outbox").glob("*.eml"))) > 0


def test_a_test_rig_may_allow_insecure_links_explicitly(project_dir: Path) -> None:
    with SmtpSink() as sink:
        env = {"COMMS_TRANSPORT": "smtp", "COMMS_SECRET_KEY": STRONG_KEY,
               "COMMS_SMTP_HOST": sink.host, "COMMS_SMTP_PORT": str(sink.port),
               "COMMS_BASE_URL": "http://localhost:8000", "COMMS_ALLOW_INSECURE_LINKS": "true"}
        result = run("send", "nmdi-awareness", "--project", str(project_dir), env=env)
        assert result.exit_code == 0, result.output
        assert sink.messages
        assert b"http://localhost:8000/u/" in sink.messages[0].data


def test_a_public_https_base_url_is_accepted(project_dir: Path) -> None:
    with SmtpSink() as sink:
        env = production(COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST=sink.host,
                         COMMS_SMTP_PORT=str(sink.port))
        result = run("send", "nmdi-awareness", "--project", str(project_dir), env=env)
        assert result.exit_code == 0, result.output
        assert b"https://comms.sel-learning.example/u/" in sink.messages[0].data
