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
