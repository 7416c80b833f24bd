"""The error tree. Each exception builds its own message; third-party errors are mapped at the call."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class CommsError(Exception):
    """Base of every error comms raises on purpose."""


class ConfigError(CommsError):
    """A problem in a project file, located by path and line."""

    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None,
                 key: str | None = None, warning: bool = False) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.warning = warning
        super().__init__(self.location_message())

    def location_message(self) -> str:
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        prefix = "warning: " if self.warning else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}: {prefix}{key}{self.message}"


class ConfigErrors(CommsError):
    """Several problems found in one pass; printed one per line."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(e.location_message() for e in self.errors))


class TemplateError(ConfigError):
    """A template failed to compile or render (names the template, its line and the stakeholder)."""


class TransportError(CommsError):
    """A transport refused or failed to take a message."""

    transient = False

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None,
                 retry_after: float | None = None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        text = message if status is None else f"{message} (status {status})"
        super().__init__(text)


class TransientError(TransportError):
    """Worth retrying later: rate limits, 5xx, timeouts, dropped connections."""

    transient = True


class AmbiguousError(TransientError):
    """A passing failure after the request may have reached the provider (a timeout or reset
    after it was written, a reply lost after SMTP's final dot): the send is uncertain and is
    never retried blindly."""

    transient = False


class PermanentError(TransportError):
    """Retrying will not help: a bad request, a refused address, bad credentials."""


class StoreError(CommsError):
    """The store could not be reached or refused an operation."""


class Refused(CommsError):
    """A request refused as it stands (exit code 2): what to do instead is in the message."""


class NotFound(CommsError):
    """A named campaign, step, event or stakeholder does not exist."""


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` closest to a mistyped ``name``, if any is close enough."""
    found = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.6)
    return found[0] if found else None


def suggestion(name: str, choices: Iterable[str]) -> str:
    """`` — did you mean X?`` to end a message naming an unknown ``name`` (else nothing)."""
    match = did_you_mean(name, choices)
    return f" — did you mean {match}?" if match else ""
