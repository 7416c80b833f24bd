"""A transport that writes each message to ``<send_id>.eml`` in a directory, sending nothing."""

from __future__ import annotations

import re
from pathlib import Path

from .._files import private_dir, write_private
from ..errors import PermanentError, TransientError
from ..mime import build_mime
from .base import Message

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,200}")


class OutboxTransport:
    """Writes ``<send_id>.eml`` files (whole or not at all); the file name is the provider id."""

    name = "outbox"

    def __init__(self, directory: Path | str) -> None:
        self.directory = private_dir(Path(directory))

    def __repr__(self) -> str:
        return f"OutboxTransport({str(self.directory)!r})"

    def send(self, message: Message) -> str:
        if not _SAFE_NAME.fullmatch(message.send_id):
            raise PermanentError(f"send id {message.send_id[:60]!r} cannot be used as a file name "
                                 "(letters, digits, '.', '_' and '-' only)")
        try:
            raw = build_mime(message)
        except ValueError as exc:
            raise PermanentError(f"message not built: {exc}") from None
        filename = f"{message.send_id}.eml"
        try:
            write_private(private_dir(self.directory) / filename, raw)
        except OSError as exc:
            raise TransientError(f"cannot write {self.directory / filename}: {exc}") from exc
        return filename

    def close(self) -> None:
        """Nothing to release."""
