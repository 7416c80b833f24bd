"""TLS or nothing for credentials: no SMTP AUTH or IMAP LOGIN in clear (unless a test rig says
so), port 587 means STARTTLS, IMAP speaks STARTTLS, an http:// SendGrid host only on this machine,
and certificates are always checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from comms.app import App
from comms.errors import CommsError, ConfigError, PermanentError
from comms.settings import load_settings
from comms.tracking.mailbox import poll_imap
from comms.transports import SmtpTransport, make_transport
from tests.sinks.imap_server import ImapServer
from tests.sinks.sendgrid_server import SendGridSink
from tests.sinks.smtp_server import SmtpSink
from tests.transports.helpers import make_message

from ..conftest import FakeClock, Tls
from .conftest import production, run

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "comms-relay", "a-relay-password-0123456789"


@pytest.fixture
def auth_sink() -> SmtpSink:
    """A relay that would take AUTH in clear (as a careless or hostile one does)."""
    with SmtpSink(auth=(USER, PASSWORD)) as sink:
        yield sink


def smtp_env(sink: SmtpSink, **extra: str) -> dict[str, str]:
    return production(COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST=sink.host,
                      COMMS_SMTP_PORT=str(sink.port), COMMS_SMTP_USERNAME=USER,
                      COMMS_SMTP_PASSWORD=PASSWORD, **extra)


def test_smtp_auth_in_clear_is_refused_before_connecting(project_dir: Path,
                                                         auth_sink: SmtpSink) -> None:
    for command in (["validate"], ["send", "nmdi-awareness"], ["run"]):
        result = run(*command, "--project", str(project_dir), env=smtp_env(auth_sink))
        assert result.exit_code == 2, result.output
        assert result.output.startswith("settings: COMMS_SMTP_USERNAME is set but neither "
                                        "COMMS_SMTP_STARTTLS nor COMMS_SMTP_SSL is"), result.output
        assert PASSWORD not in result.output
    assert auth_sink.connections == 0 and auth_sink.logins == []


def test_the_transport_itself_never_sends_a_password_in_clear(auth_sink: SmtpSink) -> None:
    transport = SmtpTransport(auth_sink.host, auth_sink.port, username=USER, password=PASSWORD,
                              timeout=5)
    with pytest.raises(PermanentError, match="refusing to send the password in clear") as info:
        transport.send(make_message())
    assert PASSWORD not in str(info.value)
    transport.close()
    assert auth_sink.logins == [] and auth_sink.messages == []


def test_a_test_rig_may_allow_plaintext_auth_explicitly(project_dir: Path,
                                                        auth_sink: SmtpSink) -> None:
    env = smtp_env(auth_sink, COMMS_SMTP_ALLOW_PLAINTEXT_AUTH="true")
    result = run("send", "nmdi-awareness", "--project", str(project_dir), env=env)
    assert result.exit_code == 0, result.output
    assert auth_sink.logins and set(auth_sink.logins) == {USER}


def test_port_587_means_starttls(project_dir: Path, tls: Tls) -> None:
    settings = load_settings(project_dir, transport="smtp", smtp_host="127.0.0.1", smtp_port=587,
                             smtp_username=USER, smtp_password=PASSWORD)
    transport = make_transport(settings)
    assert isinstance(transport, SmtpTransport) and transport.starttls
    result = run("validate", "--project", str(project_dir),
                 env=production(COMMS_TRANSPORT="smtp", COMMS_SMTP_HOST="relay.example",
                                COMMS_SMTP_PORT="587", COMMS_SMTP_USERNAME=USER,
                                COMMS_SMTP_PASSWORD=PASSWORD))
    assert result.exit_code == 0, result.output


# --- IMAP --------------------------------------------------------------------------------------

def imap_app(project_dir: Path, store_url: str, clock: FakeClock, port: int, **flags: object
             ) -> App:
    settings = load_settings(project_dir, database_url=store_url, imap_host="127.0.0.1",
                             imap_port=port, imap_ssl=False, imap_username=USER,
                             imap_password=PASSWORD, **flags)
    return App(settings, clock=clock)


def test_imap_login_in_clear_is_refused_before_connecting(project_dir: Path, store_url: str,
                                                          clock: FakeClock) -> None:
    with ImapServer(USER, PASSWORD, {"INBOX": []}) as server:
        app = imap_app(project_dir, store_url, clock, server.port)
        with pytest.raises(ConfigError, match="COMMS_IMAP_SSL is false and COMMS_IMAP_STARTTLS"):
            poll_imap(app.rsvps, app.settings)
        result = run("inbox", "poll", "--project", str(project_dir),
                     env={"COMMS_DATABASE_URL": store_url, "COMMS_IMAP_HOST": "127.0.0.1",
                          "COMMS_IMAP_PORT": str(server.port), "COMMS_IMAP_SSL": "false",
                          "COMMS_IMAP_USERNAME": USER, "COMMS_IMAP_PASSWORD": PASSWORD})
        assert result.exit_code == 2, result.output
        assert result.output.startswith("settings: COMMS_IMAP_SSL is false"), result.output
        assert server.commands == [] and server.logins == []
        app.close()


def test_imap_starttls_logs_in_over_tls(project_dir: Path, store_url: str, clock: FakeClock,
                                       tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.cert_file))  # trust the test certificate
    with ImapServer(USER, PASSWORD, {"INBOX": []}, tls=tls.server) as server:
        app = imap_app(project_dir, store_url, clock, server.port, imap_starttls=True)
        result = poll_imap(app.rsvps, app.settings)
        assert result.line().startswith("0 message(s)")
        assert server.logins == server.tls_logins == [USER]
        assert server.commands.index("STARTTLS") < server.commands.index("LOGIN")
        app.close()


def test_imap_certificates_are_checked(project_dir: Path, store_url: str, clock: FakeClock,
                                       tls: Tls) -> None:
    with ImapServer(USER, PASSWORD, {"INBOX": []}, tls=tls.server) as server:
        app = imap_app(project_dir, store_url, clock, server.port, imap_starttls=True)
        with pytest.raises(CommsError, match="STARTTLS failed: .*certificate verify failed"):
            poll_imap(app.rsvps, app.settings)
        assert server.logins == []
        app.close()


# --- SendGrid ----------------------------------------------------------------------------------

def test_an_http_sendgrid_host_is_refused_outside_this_machine(project_dir: Path,
                                                               tmp_path: Path) -> None:
    env = production(COMMS_TRANSPORT="sendgrid", COMMS_SENDGRID_API_KEY="SG.a-secret-key",
                     COMMS_SENDGRID_HOST="http://api.sendgrid.example")
    for command in (["validate"], ["send", "nmdi-awareness"]):
        result = run(*command, "--project", str(project_dir), env=env)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("settings: COMMS_SENDGRID_HOST is "
                                        "'http://api.sendgrid.example': the API key would cross "
                                        "the network in clear"), result.output
        assert "SG.a-secret-key" not in result.output
    with SendGridSink(api_key="SG.a-secret-key") as sink:  # a local test server is fine
        assert sink.url.startswith("http://127.0.0.1:")
        result = run("send", "nmdi-awareness", "--project", str(project_dir),
                     env={**env, "COMMS_SENDGRID_HOST": sink.url})
        assert result.exit_code == 0, result.output
        assert sink.messages
