"""Settings: flags > environment > .env > comms.toml > defaults; secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from comms.settings import load_settings


def test_settings_precedence(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / "comms.toml").write_text('concurrency = 3\nbase_url = "https://toml.example"\n'
                                            'timezone = "Europe/Dublin"\n', "utf-8")
    (project_dir / ".env").write_text("COMMS_CONCURRENCY=4\nCOMMS_TIMEZONE=Europe/Paris\n", "utf-8")
    monkeypatch.setenv("COMMS_CONCURRENCY", "5")
    settings = load_settings(project_dir)
    assert (settings.concurrency, settings.timezone, settings.base_url) == (
        5, "Europe/Paris", "https://toml.example")
    assert load_settings(project_dir, concurrency=6).concurrency == 6


def test_secrets_hidden_in_repr(project_dir: Path) -> None:
    settings = load_settings(project_dir, sendgrid_api_key="SG.abc", smtp_password="pw-123",
                             secret_key="sign-me")
    assert "SG.abc" not in repr(settings) and "pw-123" not in repr(settings)
    assert "sign-me" not in str(settings.model_dump())


def test_default_database_and_outbox_live_in_the_project(project_dir: Path) -> None:
    settings = load_settings(project_dir)
    assert settings.resolved_database_url == f"sqlite:///{project_dir.resolve() / 'comms.db'}"
    assert settings.resolved_outbox_dir == project_dir.resolve() / "outbox"


def problems(project_dir: Path) -> list[str]:
    from comms.errors import ConfigErrors

    with pytest.raises(ConfigErrors) as info:
        load_settings(project_dir)
    return [e.location_message() for e in info.value.errors]


def test_an_environment_variable_is_named_as_such(project_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / "comms.toml").write_text("concurrency = 3\n", "utf-8")
    monkeypatch.setenv("COMMS_MAX_ATTEMPTS", "0")
    monkeypatch.setenv("COMMS_TIMEZONE", "Mars/Base")
    assert problems(project_dir) == [
        "environment: COMMS_TIMEZONE: unknown time zone 'Mars/Base' (use an IANA name like "
        "Europe/London)",
        "environment: COMMS_MAX_ATTEMPTS: Input should be greater than or equal to 1"]


def test_dotenv_and_toml_problems_name_their_line(project_dir: Path) -> None:
    (project_dir / "comms.toml").write_text('# comms\nconcurrency = 0\nconcurency = 4\n', "utf-8")
    (project_dir / ".env").write_text("COMMS_TRANSPORT=outbox\nexport COMMS_SENDGRID_HOST=ftp://x\n"
                                      "DJANGO_DEBUG=1\n", "utf-8")
    assert problems(project_dir) == [
        ".env:2: COMMS_SENDGRID_HOST: must be an http(s) URL like https://api.example.org, not "
        "'ftp://x'",
        "comms.toml:2: concurrency: Input should be greater than or equal to 1",
        "comms.toml:3: concurency: not a comms setting (check its spelling against the README's "
        "Settings)",
        ".env:3: DJANGO_DEBUG: not a comms setting: .env holds COMMS_* settings (check the spelling "
        "against the README's Settings, or remove the line)"]


def test_the_strongest_source_is_blamed(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / "comms.toml").write_text("max_attempts = 3\n", "utf-8")
    (project_dir / ".env").write_text("COMMS_MAX_ATTEMPTS=0\n", "utf-8")
    assert problems(project_dir) == [
        ".env:1: COMMS_MAX_ATTEMPTS: Input should be greater than or equal to 1"]
    monkeypatch.setenv("COMMS_MAX_ATTEMPTS", "-1")
    assert problems(project_dir) == [
        "environment: COMMS_MAX_ATTEMPTS: Input should be greater than or equal to 1"]


@pytest.mark.parametrize(("name", "data", "message"), [
    ("comms.toml", b'transport = "outbox"\nconcurrency = \n', "comms.toml:2: TOML syntax: Invalid value"),
    ("comms.toml", b'base_url = "https://caf\xe9.example"\n',
     "comms.toml:1: not UTF-8: byte 0xe9 at column 24 cannot be read (save the file as UTF-8)"),
    (".env", b"COMMS_TRANSPORT=outbox\nCOMMS_BASE_URL=https://caf\xe9.example\n",
     ".env:2: not UTF-8: byte 0xe9 at column 27 cannot be read (save the file as UTF-8)"),
])
def test_unreadable_settings_files_name_the_line(project_dir: Path, name: str, data: bytes,
                                                 message: str) -> None:
    (project_dir / name).write_bytes(data)
    assert problems(project_dir) == [message]


@pytest.mark.parametrize(("toml", "message"), [
    ("smtp_starttls = true\nsmtp_ssl = true\n",
     "comms.toml:2: smtp_ssl: COMMS_SMTP_STARTTLS and COMMS_SMTP_SSL are both set: choose one TLS "
     "mode, STARTTLS (usually port 587) or implicit TLS (port 465)"),
    ('outbox_dir = "campaigns/nmdi-awareness.yaml"\n',
     "comms.toml:1: outbox_dir: campaigns/nmdi-awareness.yaml is a file: the outbox must be a "
     "folder (or not exist yet)"),
    ("concurrency = 0\n", "comms.toml:1: concurrency: Input should be greater than or equal to 1"),
    ('database_url = "comms.db"\n', "comms.toml:1: database_url: must be a database URL like "
                                    "sqlite:///comms.db or postgresql://HOST/DATABASE"),
    ("uncertain_resolve_minutes = -1\n", "comms.toml:1: uncertain_resolve_minutes: Input should be "
                                         "greater than or equal to 0"),
    ('now = "9999-12-31 23:59"\n', "comms.toml:1: now: the year 9999 is out of range (1970-2999)"),
])
def test_values_that_would_break_a_later_command_are_refused(project_dir: Path, toml: str,
                                                             message: str) -> None:
    (project_dir / "comms.toml").write_text(toml, "utf-8")
    assert problems(project_dir) == [message]


def test_uncertain_resolve_minutes_default(project_dir: Path) -> None:
    assert load_settings(project_dir).uncertain_resolve_minutes == 15
