"""make_transport picks and configures the transport the settings name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from comms.errors import ConfigError
from comms.settings import Settings
from comms.transports import (
    OutboxTransport,
    SendGridTransport,
    SmtpTransport,
    Transport,
    make_transport,
)


def test_outbox(tmp_path: Path) -> None:
    transport = make_transport(Settings(project_dir=tmp_path, transport="outbox"))
    assert isinstance(transport, OutboxTransport)
    assert transport.directory == tmp_path.resolve() / "outbox"
    assert (tmp_path / "outbox").is_dir()


def test_smtp_password_not_in_repr(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, transport="smtp", smtp_host="mail.example.org",
                        smtp_port=587, smtp_username="comms", smtp_password=SecretStr("s3cret-pw"),
                        smtp_starttls=True)
    transport = make_transport(settings)
    assert isinstance(transport, SmtpTransport)
    assert (transport.host, transport.port, transport.starttls) == ("mail.example.org", 587, True)
    assert "s3cret-pw" not in repr(transport)


def test_sendgrid(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, transport="sendgrid",
                        sendgrid_api_key=SecretStr("SG.secret-value"), sendgrid_sandbox=True,
                        sendgrid_invites="smtp-relay")
    transport = make_transport(settings)
    assert isinstance(transport, SendGridTransport)
    assert isinstance(transport, Transport)
    assert (transport.sandbox, transport.invites) == (True, "smtp-relay")
    assert "SG.secret-value" not in repr(transport)
    transport.close()


def test_sendgrid_without_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMMS_SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="COMMS_SENDGRID_API_KEY"):
        make_transport(Settings(project_dir=tmp_path, transport="sendgrid"))
