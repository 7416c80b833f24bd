"""Files comms writes are its owner's alone: mode 600, folders 700, whatever the umask.

Each file is written whole or not at all (a temporary file in the same folder, then renamed),
so a reader never sees half a message or half a report.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` made (with its parents) if missing, mode 700 when comms made it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: bytes | str, *, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` atomically, mode 600 (an existing file is replaced)."""
    raw = data.encode(encoding) if isinstance(data, str) else data
    folder = path.parent
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")  # mode 600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
