"""Settings: flags > COMMS_* environment > project .env > project comms.toml > defaults.

A value that is wrong is named where it was set: ``environment: COMMS_MAX_ATTEMPTS: ...``,
``.env:3: COMMS_MAX_ATTEMPTS: ...`` or ``comms.toml:2: max_attempts: ...``.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ._types import FIRST_YEAR, LAST_YEAR, TimeZone
from ._yaml import decode_utf8
from .errors import ConfigError, ConfigErrors

PREFIX = "COMMS_"
TOML, DOTENV = "comms.toml", ".env"
Port = Annotated[int, Field(ge=1, le=65_535)]
Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
_DATABASE_URL = re.compile(r"^(sqlite|postgresql)(\+\w+)?://")  # the stores comms opens


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMS_", extra="forbid", env_file_encoding="utf-8")

    project_dir: Path = Path(".")
    database_url: str | None = None
    transport: Literal["outbox", "smtp", "sendgrid"] = "outbox"
    outbox_dir: Path | None = Field(None, validate_default=True)

    smtp_host: str = "localhost"
    smtp_port: Port = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: Seconds = 30.0
    smtp_allow_plaintext_auth: bool = False  # AUTH without TLS (a test rig only)

    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: Seconds = 10.0
    sendgrid_sandbox: bool = False
    sendgrid_invites: Literal["api", "smtp-relay"] = "api"
    sendgrid_smtp_host: str = "smtp.sendgrid.net"
    sendgrid_smtp_port: Port = 587
    sendgrid_webhook_public_key: str | None = None
    sendgrid_webhook_insecure: bool = False  # accept unsigned webhook posts (local testing only)

    imap_host: str | None = None
    imap_port: Port = 993
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_ssl: bool = True
    imap_starttls: bool = False
    imap_allow_plaintext_auth: bool = False  # LOGIN without TLS (a test rig only)

    sendgrid_inbound_public_key: str | None = None  # Inbound Parse's signature policy key
    inbound_basic_auth: SecretStr | None = None  # "user:password" in the Parse URL
    inbound_max_bytes: int = 1_000_000
    service_poll_seconds: Seconds = 30.0

    secret_key: SecretStr | None = None
    secret_key_fallbacks: SecretStr | None = None  # older keys, comma-separated: links still work
    report_token: SecretStr | None = None
    base_url: str = "http://localhost:8000"
    allow_insecure_links: bool = False  # links to a non-https or loopback base URL (test rigs)
    timezone: TimeZone = "Europe/London"
    concurrency: int = Field(8, ge=1, le=1_000)
    max_attempts: int = Field(5, ge=1, le=100)
    # SendGrid: concurrency grows from `concurrency` up to this (what a crash can leave uncertain)
    max_in_flight: int = Field(256, ge=1, le=4_096)
    # caps on the transport for every process sharing the store (relays with quotas)
    transport_max_per_minute: int | None = Field(None, gt=0, le=10_000_000)
    transport_max_per_day: int | None = Field(None, gt=0, le=1_000_000_000)
    # with the event webhook: no event by then, resend
    uncertain_resolve_minutes: float = Field(15.0, ge=0, le=525_600, allow_inf_nan=False)
    now: datetime | None = None  # rehearse another moment: the clock starts here
    require_approval: bool = False  # a campaign goes only once a second person approved it
    approvers: list[str] = []  # who may approve (default: anyone)
    # engagement tracking, for campaigns without a tracking key (PECR: opens need consent)
    track_opens: bool = False
    track_clicks: bool = False
    machine_click_seconds: float = Field(10.0, ge=0, le=3_600, allow_inf_nan=False)  # a click
    # this soon after delivery is a security scanner's

    toml_data: ClassVar[dict[str, Any]] = {}  # the project's comms.toml, read by _read

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not _DATABASE_URL.match(value):
            raise ValueError("must be a database URL like sqlite:///comms.db or "
                             "postgresql://HOST/DATABASE")  # (the value may hold a password)
        return value

    @field_validator("outbox_dir")
    @classmethod
    def _outbox_a_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = value or Path("outbox")
        if not path.is_absolute():
            path = Path(info.data.get("project_dir", ".")) / path
        if path.exists() and not path.is_dir():
            raise ValueError(f"{value or 'outbox'} is a file: the outbox must be a folder (or not "
                             "exist yet)")
        return value

    @field_validator("sendgrid_host", "base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL like https://api.example.org, not {value!r}")
        return value

    @field_validator("smtp_ssl")
    @classmethod
    def _one_tls_mode(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("smtp_starttls"):
            raise ValueError("COMMS_SMTP_STARTTLS and COMMS_SMTP_SSL are both set: choose one TLS "
                             "mode, STARTTLS (usually port 587) or implicit TLS (port 465)")
        return value

    @field_validator("now")
    @classmethod
    def _sane_year(cls, value: datetime | None) -> datetime | None:
        if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise ValueError(f"the year {value.year} is out of range ({FIRST_YEAR}-{LAST_YEAR})")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = InitSettingsSource(settings_cls, cls.toml_data)
        return (init_settings, env_settings, dotenv_settings, toml)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.project_dir / 'comms.db').resolve()}"

    @property
    def key_file(self) -> Path:
        """Where the outbox default keeps its generated key: beside a SQLite store, else in the
        project folder."""
        url = self.resolved_database_url
        database = url.partition(":///")[2].partition("?")[0] if url.startswith("sqlite") else ""
        if database and database != ":memory:":
            return Path(f"{database}.key")
        return (self.project_dir / ".comms.key").resolve()

    @property
    def resolved_outbox_dir(self) -> Path:
        path: Path = self.outbox_dir or Path("outbox")
        return path if path.is_absolute() else (self.project_dir / path).resolve()


def load_settings(project_dir: Path | str | None = None, **flags: Any) -> Settings:
    """Settings for the project in ``project_dir`` (default: ``COMMS_PROJECT_DIR`` or the cwd)."""
    given = {k: v for k, v in flags.items() if v is not None}
    if project_dir is None:
        probe = _read({})
        project = probe.project_dir
    else:
        project = Path(project_dir)
    given["project_dir"] = project
    return _read(given, project)


def _read(given: dict[str, Any], project: Path | None = None) -> Settings:
    cls: type[Settings] = Settings
    toml_text = dotenv_text = ""
    if project is not None:
        toml_text, dotenv_text = _text(project / TOML), _text(project / DOTENV)
        data, env_file = _toml(toml_text), project / DOTENV

        class _ProjectSettings(Settings):
            model_config = SettingsConfigDict(env_file=env_file)
            toml_data: ClassVar[dict[str, Any]] = data

        cls = _ProjectSettings
    try:
        return cls(**given)
    except ValidationError as exc:
        sources = _Sources(given, dotenv_text, toml_text)
        raise ConfigErrors(sources.error(e) for e in exc.errors()) from None


def _text(path: Path) -> str:
    """A settings file's text ("" if there is none); not UTF-8 is an error naming the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read file: {exc.strerror or exc}",
                                        path=path.name)]) from None
    try:
        return decode_utf8(data, path.name)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None


def _toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        at = re.search(r" \(at line (\d+), column \d+\)| \(at end of document\)", reason)
        line = int(at[1]) if at and at[1] else text.count("\n") + 1
        reason = reason[:at.start()] if at else reason
        raise ConfigErrors([ConfigError(f"TOML syntax: {reason}", path=TOML, line=line)]) from None


class _Sources:
    """Where each setting was given, strongest first: flags, the environment, .env (line),
    comms.toml (line)."""

    def __init__(self, given: dict[str, Any], dotenv_text: str, toml_text: str) -> None:
        self.given = given
        self.environ = {name.upper(): name for name in os.environ}
        self.dotenv = _lines(dotenv_text, r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=",
                             upper=True)
        self.toml = _lines(toml_text, r"^\s*\[*\s*\"?([A-Za-z0-9_-]+)")

    def error(self, error: Any) -> ConfigError:
        name = str(error["loc"][0]) if error["loc"] else ""
        message = _message(error)
        variable = f"{PREFIX}{name.upper()}"
        if name in self.given:
            return ConfigError(message, path="command line", key=f"--{name.replace('_', '-')}")
        if variable in self.environ and error["type"] != "extra_forbidden":
            return ConfigError(message, path="environment", key=variable)
        for key in (variable, name.upper()):
            if key in self.dotenv:
                if error["type"] == "extra_forbidden":
                    message = f"not a comms setting: .env holds {PREFIX}* settings (check the " \
                              "spelling against the README's Settings, or remove the line)"
                return ConfigError(message, path=DOTENV, line=self.dotenv[key], key=key)
        if name in self.toml:
            return ConfigError(message, path=TOML, line=self.toml[name], key=name)
        return ConfigError(message, path="settings", key=variable)


def _lines(text: str, pattern: str, *, upper: bool = False) -> dict[str, int]:
    """The line of each name ``pattern`` finds at the start of a line (the last one wins, as
    it does when the file is read), upper-cased for .env (whose names are not case-sensitive)."""
    found: dict[str, int] = {}
    key = re.compile(pattern)
    for number, line in enumerate(text.splitlines(), 1):
        match = key.match(line)
        if match:
            found[match[1].upper() if upper else match[1]] = number
    return found


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "not a comms setting (check its spelling against the README's Settings)"
    return str(error["msg"]).removeprefix("Value error, ")
