"""Transports hand rendered messages to a mail system: an outbox directory, SMTP or SendGrid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import Address, CalendarPart, Limits, Message, Transport
from .outbox import OutboxTransport

if TYPE_CHECKING:
    from ..settings import Settings
    from .sendgrid import SendGridTransport
    from .smtp import SmtpTransport

__all__ = [
    "Address", "CalendarPart", "Limits", "Message", "OutboxTransport", "SendGridTransport",
    "SmtpTransport", "Transport", "make_transport",
]


def make_transport(settings: Settings) -> Transport:
    """The transport ``settings.transport`` names, configured from the settings, carrying the
    :class:`Limits` the settings give it (``limits``)."""
    transport = _make(settings)
    adaptive = settings.transport == "sendgrid"  # SMTP and the outbox keep their concurrency
    transport.limits = Limits(  # type: ignore[attr-defined]
        max_in_flight=settings.max_in_flight if adaptive else None,
        per_minute=settings.transport_max_per_minute, per_day=settings.transport_max_per_day)
    return transport


def _make(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport(settings.resolved_outbox_dir)
    if settings.transport == "smtp":
        from .smtp import SmtpTransport

        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        starttls = settings.smtp_starttls or (settings.smtp_port == 587 and not settings.smtp_ssl)
        return SmtpTransport(
            settings.smtp_host, settings.smtp_port, username=settings.smtp_username,
            password=password, starttls=starttls, ssl=settings.smtp_ssl,
            timeout=settings.smtp_timeout,
            allow_plaintext_auth=settings.smtp_allow_plaintext_auth,
        )
    if settings.transport == "sendgrid":
        from .sendgrid import SendGridTransport

        if settings.sendgrid_api_key is None or not settings.sendgrid_api_key.get_secret_value():
            raise ConfigError("transport is sendgrid but no API key is set: set "
                              "COMMS_SENDGRID_API_KEY (or sendgrid_api_key in comms.toml)",
                              key="sendgrid_api_key")
        return SendGridTransport(
            settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_host,
            timeout=settings.sendgrid_timeout, sandbox=settings.sendgrid_sandbox,
            invites=settings.sendgrid_invites, relay_host=settings.sendgrid_smtp_host,
            relay_port=settings.sendgrid_smtp_port,
        )
    raise ConfigError(f"unknown transport {settings.transport!r} (choose outbox, smtp or sendgrid)",
                      key="transport")


def __getattr__(name: str) -> Any:
    # Each transport is loaded when it is used (the sendgrid package takes ~70 ms to import).
    if name == "SendGridTransport":
        from .sendgrid import SendGridTransport

        return SendGridTransport
    if name == "SmtpTransport":
        from .smtp import SmtpTransport

        return SmtpTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
