"""What must hold before comms sends real mail: links that reach the web app over HTTPS, a secret
key of its own, and credentials that never cross a network in clear.

``validate``, ``send``, ``run`` and ``serve`` refuse (exit 2, one line naming the setting) when
any of these fails. The outbox, which only writes files, keeps working with the defaults.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import ConfigError
from .keys import MIN_BITS, entropy_bits
from .settings import Settings

KEY_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def problems(settings: Settings) -> list[ConfigError]:
    """Every setting that would make a real send unsafe or its links dead."""
    found = _key(settings)
    if settings.transport != "outbox":
        found += _links(settings)
        found += _smtp(settings) if settings.transport == "smtp" else _sendgrid(settings)
    return found


def imap_problems(settings: Settings) -> list[ConfigError]:
    """A mailbox login that would cross the network in clear."""
    if settings.imap_ssl or settings.imap_starttls or settings.imap_allow_plaintext_auth:
        return []
    return [_error("COMMS_IMAP_SSL", "is false and COMMS_IMAP_STARTTLS is not set: the IMAP "
                   "login would cross the network in clear. Use implicit TLS (port 993) or "
                   "STARTTLS (COMMS_IMAP_ALLOW_PLAINTEXT_AUTH=true for a test rig only)")]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _key(settings: Settings) -> list[ConfigError]:
    key = settings.secret_key
    if key is None:
        if settings.transport == "outbox":
            return []  # a generated key, in a file of mode 600 beside the store
        return [_error("COMMS_SECRET_KEY", "is not set: links in real mail must be signed with a "
                       f"key of your own, kept out of the store. Make one with {KEY_HINT}")]
    keys = [("COMMS_SECRET_KEY", key.get_secret_value())]
    if settings.secret_key_fallbacks is not None:
        keys += [("COMMS_SECRET_KEY_FALLBACKS", k.strip()) for k in
                 settings.secret_key_fallbacks.get_secret_value().split(",") if k.strip()]
    return [_error(name, f"is too weak (about {entropy_bits(value):.0f} bits): a key needs at "
                   f"least {MIN_BITS} bits (32 random bytes). Make one with {KEY_HINT}")
            for name, value in keys if entropy_bits(value) < MIN_BITS]


def _links(settings: Settings) -> list[ConfigError]:
    if settings.allow_insecure_links:
        return []
    url = urlsplit(settings.base_url)
    why = None
    if "base_url" not in settings.model_fields_set:
        why = "is not set"
    elif url.scheme != "https" or not url.hostname:
        why = f"is {settings.base_url!r}, not an https:// address"
    elif is_loopback(url.hostname):
        why = f"is {settings.base_url!r}, on this machine"
    if why is None:
        return []
    return [_error("COMMS_BASE_URL", f"{why}: every unsubscribe and RSVP link of a real send "
                   "would be dead (Gmail and Yahoo also want the one-click unsubscribe link on "
                   "HTTPS). Set it to the web app's public https:// address "
                   "(COMMS_ALLOW_INSECURE_LINKS=true for a test rig only)")]


def _smtp(settings: Settings) -> list[ConfigError]:
    credentials = settings.smtp_username  # (a password alone is never sent)
    tls = settings.smtp_ssl or settings.smtp_starttls or settings.smtp_port == 587
    if credentials and not tls and not settings.smtp_allow_plaintext_auth:
        return [_error("COMMS_SMTP_USERNAME", "is set but neither COMMS_SMTP_STARTTLS nor "
                       "COMMS_SMTP_SSL is: the password would cross the network in clear. Use "
                       "STARTTLS (port 587) or implicit TLS (port 465) "
                       "(COMMS_SMTP_ALLOW_PLAINTEXT_AUTH=true for a test rig only)")]
    return []


def _sendgrid(settings: Settings) -> list[ConfigError]:
    url = urlsplit(settings.sendgrid_host)
    if url.scheme == "http" and not is_loopback(url.hostname):
        return [_error("COMMS_SENDGRID_HOST", f"is {settings.sendgrid_host!r}: the API key would "
                       "cross the network in clear. Use https:// (http:// only to a server on "
                       "this machine)")]
    return []


def _error(setting: str, message: str) -> ConfigError:
    return ConfigError(f"{setting} {message}", path="settings")
