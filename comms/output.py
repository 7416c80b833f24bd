"""Presenting rows as a table, CSV or JSON (the CLI's only formatting code)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from .clock import human

FORMATS = ("table", "csv", "json")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str,
           *, title: str | None = None, zone: ZoneInfo | None = None) -> str:
    """Rows as JSON, CSV (times ISO 8601) or a table (times in ``zone``, in words)."""
    if fmt == "json":
        return json.dumps([{c: _plain(r.get(c)) for c in columns} for r in rows], indent=2,
                          ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")  # so a cell holding a CR is quoted
        writer.writerow(columns)
        writer.writerows([[safe_cell(r.get(c)) for c in columns] for r in rows])
        return buffer.getvalue().removesuffix("\r\n")
    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.replace("_", " "))
    for row in rows:
        table.add_row(*(_cell(row.get(c), zone) for c in columns))
    console = Console(width=160, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(table)
    return console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]


def _cell(value: Any, zone: ZoneInfo | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime) and zone is not None:
        return human(value, zone)
    return str(_plain(value))


def safe_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(_plain(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return ";".join(map(str, value))
    return value
