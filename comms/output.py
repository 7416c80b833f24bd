"""Presenting rows as a table, CSV or JSON (the CLI's only formatting code)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from rich.table import Table

from .clock import human

FORMATS = ("table", "csv", "json")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str,
           *, title: str | None = None, zone: ZoneInfo | None = None,
           optional: Sequence[str] = ()) -> str:
    """Rows as JSON, CSV (times ISO 8601) or a table (times in ``zone``, in words). On a
    terminal the table fits its width: cells wrap, addresses stay whole, and the ``optional``
    columns are left out (those all empty or zero first) until it fits; piped, nothing is
    cut."""
    if fmt == "json":
        return json.dumps([{c: _plain(r.get(c)) for c in columns} for r in rows], indent=2,
                          ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")  # so a cell holding a CR is quoted
        writer.writerow(columns)
        writer.writerows([[safe_cell(r.get(c)) for c in columns] for r in rows])
        return buffer.getvalue().removesuffix("\r\n")
    from rich.console import Console

    cells = {c: [_cell(row.get(c), zone) for row in rows] for c in columns}
    shown = list(columns)
    width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else None
    if width is not None:  # a terminal: leave out what matters least until the table fits
        blank = [c for c in optional if all(v in ("", "0") for v in cells[c])]
        for column in [*blank, *(c for c in optional if c not in blank)]:
            if _measure(_table(shown, cells, title)) <= width:
                break
            shown.remove(column)
    table = _table(shown, cells, title)
    if width is None:  # piped: every value whole, however wide
        width = max(20, _measure(table))
    console = Console(width=width, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(table)
    out = console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]
    hidden = [c for c in columns if c not in shown]
    if hidden:
        note = (f"({', '.join(h.replace('_', ' ') for h in hidden)} left out to fit {width} "
                "columns: --format json or csv shows them)")
        out += "\n" + "\n".join(textwrap.wrap(note, width))
    return out


MAX_WHOLE = 80  # an address column is at least this wide, or its longest address


def _measure(table: Table) -> int:
    from rich.console import Console

    return Console(width=10_000, file=io.StringIO(), color_system=None).measure(table).maximum


def _table(columns: Sequence[str], cells: Mapping[str, list[str]], title: str | None) -> Table:
    """The table; cells wrap, addresses are never cut or folded."""
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        widest = max((len(line) for v in cells[column] for line in v.splitlines()), default=0)
        whole = any("@" in v for v in cells[column])
        table.add_column(column.replace("_", " "), overflow="fold", no_wrap=whole,
                         min_width=min(widest, MAX_WHOLE) if whole else None)
    for i in range(len(next(iter(cells.values()), []))):
        table.add_row(*(cells[c][i] for c in columns))
    return table


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
