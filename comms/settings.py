"""Settings: flags > COMMS_* environment > project .env > project comms.toml > defaults."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError, ConfigErrors


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMMS_", extra="forbid", env_file_encoding="utf-8")

    project_dir: Path = Path(".")
    database_url: str | None = None
    transport: Literal["outbox", "smtp", "sendgrid"] = "outbox"
    outbox_dir: Path | None = None

    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 30.0

    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: float = 10.0
    sendgrid_sandbox: bool = False
    sendgrid_invites: Literal["api", "smtp-relay"] = "api"
    sendgrid_smtp_host: str = "smtp.sendgrid.net"
    sendgrid_smtp_port: int = 587
    sendgrid_webhook_public_key: str | None = None
    sendgrid_webhook_insecure: bool = False  # accept unsigned webhook posts (local testing only)

    imap_host: str | None = None
    imap_port: int = 993
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_ssl: bool = True

    sendgrid_inbound_public_key: str | None = None  # Inbound Parse's signature policy key
    inbound_basic_auth: SecretStr | None = None  # "user:password" in the Parse URL
    inbound_max_bytes: int = 1_000_000
    service_poll_seconds: float = 30.0

    secret_key: SecretStr | None = None
    report_token: SecretStr | None = None
    base_url: str = "http://localhost:8000"
    timezone: str = "Europe/London"
    concurrency: int = 8
    max_attempts: int = 5
    uncertain_resolve_minutes: float = 15.0  # with the event webhook: no event by then, resend
    now: datetime | None = None  # rehearse another moment: the clock starts here

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.project_dir / 'comms.db').resolve()}"

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
    if project is not None:
        toml_file, env_file = project / "comms.toml", project / ".env"

        class _ProjectSettings(Settings):
            model_config = SettingsConfigDict(toml_file=toml_file, env_file=env_file)

        cls = _ProjectSettings
    try:
        return cls(**given)
    except ValidationError as exc:
        source = project / "comms.toml" if project else "settings"
        raise ConfigErrors(
            ConfigError(f"{e['msg']} (COMMS_{'_'.join(map(str, e['loc'])).upper()})",
                        path=source)
            for e in exc.errors()
        ) from None
