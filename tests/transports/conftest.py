"""Real local servers for the transport tests: aiosmtpd SMTP and a SendGrid v3 sink."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Tls
from tests.sinks.sendgrid_server import SendGridSink
from tests.sinks.smtp_server import SmtpSink

from .helpers import API_KEY


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_tls_sink(tls: Tls) -> Iterator[SmtpSink]:
    """STARTTLS required, then AUTH as apikey/API_KEY (what SendGrid's relay asks for)."""
    with SmtpSink(auth=("apikey", API_KEY), tls_context=tls.server,
                  require_starttls=True) as sink:
        yield sink


@pytest.fixture
def sendgrid_sink(tmp_path: Path) -> Iterator[SendGridSink]:
    with SendGridSink(api_key=API_KEY, log=tmp_path / "sendgrid.jsonl") as sink:
        yield sink
