"""The stakeholder directory: CSV/YAML import with per-row checks, and the row it is stored as."""

from __future__ import annotations

import csv
import gc
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from itertools import chain
from pathlib import Path
from sys import intern
from types import MappingProxyType
from typing import Any

from . import _yaml
from ._types import HEADER_UNSAFE, email_key, normalise_email
from .errors import ConfigError

REQUIRED = ("email", "first_name", "last_name", "role")
KNOWN = REQUIRED + ("organisation", "borough", "job_title", "tags")
_TAG_SPLIT = re.compile(r"[;,|]")
MAX_CELL = 10_000  # characters in one cell: longer is a pasted document, or a quote left open
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and line breaks aside
_SUSPECT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters and line breaks
_HEADER_UNSAFE = re.compile("[" + "".join(HEADER_UNSAFE) + "]")
_SCALARS = (str, int, float, bool, date, type(None))  # datetime is a date
NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})  # shared by everyone with none


@dataclass(frozen=True, slots=True, kw_only=True)
class Stakeholder:
    """One person of the directory, as templates see them."""

    email: str
    first_name: str
    last_name: str
    role: str
    organisation: str = ""
    borough: str = ""
    job_title: str = ""
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    line: int = 0

    @property
    def key(self) -> str:
        return email_key(self.email)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(slots=True)
class Directory:
    """Stakeholders read from files, with every problem found on the way."""

    people: list[Stakeholder] = field(default_factory=list)
    problems: list[ConfigError] = field(default_factory=list)


def read_directory(paths: Iterable[Path], root: Path | None = None) -> Directory:
    """Read every file; duplicates across files are reported naming both rows."""
    with _gc_paused():
        return _read_directory(paths, root)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused: reading makes no cycles, and a directory of
    100,000 people would otherwise be scanned again and again as it grows (a third of the
    time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_directory(paths: Iterable[Path], root: Path | None) -> Directory:
    directory = Directory()
    seen: dict[str, Stakeholder] = {}
    for path in paths:
        shown = path.relative_to(root) if root and path.is_relative_to(root) else path
        for person in _read_file(path, shown, directory.problems):
            first = seen.get(person.key)
            if first is not None:
                directory.problems.append(ConfigError(
                    f"duplicate address {person.email} (first at {first.source}:{first.line})",
                    path=shown, line=person.line))
                continue
            seen[person.key] = person
            directory.people.append(person)
    return directory


def _read_file(path: Path, shown: Path, problems: list[ConfigError]) -> list[Stakeholder]:
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(path, shown, problems)
    try:
        with open(path, "rb") as file:
            start = file.read(2)
        encoding = "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
        try:
            return _read_text(path, encoding, shown, problems)
        except UnicodeDecodeError:  # Excel's "Unicode text" is UTF-16; older Excel saves cp1252
            return _read_text(path, "cp1252", shown, problems, errors="replace")
    except OSError as exc:
        problems.append(ConfigError(f"cannot read file: {exc}", path=shown))
        return []


def _read_text(path: Path, encoding: str, shown: Path, problems: list[ConfigError],
               errors: str = "strict") -> list[Stakeholder]:
    """The file read a line at a time (a large directory is never in memory whole, as bytes
    or as text); its problems kept only if it decodes to the end."""
    found: list[ConfigError] = []
    with open(path, encoding=encoding, errors=errors, newline="") as file:
        people = _read_csv(file, shown, found)
    problems += found
    return people


def _read_csv(file: Iterable[str], shown: Path, problems: list[ConfigError]
              ) -> list[Stakeholder]:
    lines = iter(file)
    first_line = next(lines, "")
    delimiter = max((";", ",", "\t"), key=first_line.count)
    reader = csv.reader(chain([first_line] if first_line else [], lines), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        problems.append(_csv_error(exc, shown, 1))
        return []
    if header is None:
        problems.append(ConfigError("empty file: expected a header row", path=shown, line=1))
        return []
    columns = [_column(h) for h in header]
    problem = _header_problem(columns)
    if problem:
        problems.append(ConfigError(problem, path=shown, line=1))
        return []
    people = []
    line = reader.line_num + 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                person = _csv_row(columns, cells, shown, line, problems)
                if person:
                    people.append(person)
            line = reader.line_num + 1
    except csv.Error as exc:
        problems.append(_csv_error(exc, shown, line))
    return people


def _header_problem(columns: list[str]) -> str | None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        return f"missing column(s): {', '.join(missing)} (columns are: {', '.join(columns)})"
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        return f"column(s) {', '.join(twice)} appear more than once: keep one of each"
    return None


def _csv_row(columns: list[str], cells: list[str], shown: Path, line: int,
             problems: list[ConfigError]) -> Stakeholder | None:
    if len(cells) != len(columns):
        hint = " (a quote left open here? a cell runs over lines)" if any(
            "\n" in c for c in cells) else ""
        problems.append(ConfigError(f"expected {len(columns)} cells, found {len(cells)}{hint}",
                                    path=shown, line=line))
        return None
    return _person(dict(zip(columns, cells, strict=True)), shown, line, problems)


def _csv_error(exc: csv.Error, shown: Path, line: int) -> ConfigError:
    """The csv module gives up on a cell over its limit (131,072 characters): most often a
    quote left open, which swallows the rest of the file into one cell."""
    reason = str(exc)
    if "field limit" in reason:
        reason = (f"a cell is longer than {csv.field_size_limit():,} characters (cells hold at "
                  f"most {MAX_CELL:,}): is a quote left open from here?")
    return ConfigError(f"cannot read this row: {reason}", path=shown, line=line)


def _read_yaml(path: Path, shown: Path, problems: list[ConfigError]) -> list[Stakeholder]:
    try:
        located = _yaml.load(path, shown)
    except ConfigError as exc:
        problems.append(exc)
        return []
    if not isinstance(located.data, list):
        problems.append(located.error((), "expected a list of people"))
        return []
    people = []
    for i, row in enumerate(located.data):
        if not isinstance(row, dict):
            problems.append(located.error((i,), "expected a mapping of email, first_name, ..."))
            continue
        cells = {_column(str(k)): v for k, v in row.items()}
        missing = [c for c in REQUIRED if c not in cells]
        if missing:
            problems.append(located.error((i,), f"missing key(s): {', '.join(missing)}"))
            continue
        shape = _shape_problem(cells)
        if shape:
            problems.append(located.error((i, shape[0]), shape[1]))
            continue
        person = _person(cells, shown, located.line((i,)), problems)
        if person:
            people.append(person)
    return people


def _shape_problem(cells: dict[str, Any]) -> tuple[str, str] | None:
    """(key, message) for a YAML value that is not one value: a list (but for ``tags``, a list
    of values) or a mapping."""
    for name, value in cells.items():
        if name == "tags" and isinstance(value, list):
            if not all(isinstance(t, _SCALARS) for t in value):
                return name, "tags must be a list of words, like [primary-care, cohort-1]"
        elif not isinstance(value, _SCALARS):
            kind = "a list" if isinstance(value, list) else "a mapping"
            what = name if name in KNOWN else f"attribute '{name}'"
            return name, f"{what} must be one value (text, a number, a date), not {kind}"
    return None


def _column(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _person(cells: dict[str, Any], shown: Path, line: int,
            problems: list[ConfigError]) -> Stakeholder | None:
    text = {name: value.strip() if isinstance(value := cells.get(name, ""), str)
            else "" if value is None else str(value).strip() for name in KNOWN}
    problem = _row_problem(cells, text)
    if problem:
        problems.append(ConfigError(problem, path=shown, line=line))
        return None
    tags = cells.get("tags") or ()
    tag_list = tags if isinstance(tags, list) else _TAG_SPLIT.split(str(tags))
    attributes = {k: v for k, v in cells.items() if k not in KNOWN and v not in (None, "")}
    # Roles, organisations, boroughs, titles, tags and the file repeat from person to person:
    # one copy of each, however many people share it.
    return Stakeholder(
        email=text["email"], first_name=text["first_name"], last_name=text["last_name"],
        role=intern(text["role"].lower()), organisation=intern(text["organisation"]),
        borough=intern(text["borough"]), job_title=intern(text["job_title"]),
        tags=_one_copy(tuple(dict.fromkeys(intern(t.strip().lower()) for t in map(str, tag_list)
                                           if t.strip()))),
        attributes=attributes or NO_ATTRIBUTES, source=intern(str(shown)), line=line,
    )


@lru_cache(maxsize=1024)
def _one_copy(tags: tuple[str, ...]) -> tuple[str, ...]:
    return tags


def _row_problem(cells: dict[str, Any], text: dict[str, str]) -> str | None:
    """What is wrong with one row (None: nothing), in the order a person fixes them;
    ``text["email"]`` becomes the checked address."""
    try:
        text["email"] = normalise_email(text["email"])
    except ValueError as exc:
        return str(exc)
    strings = [v for v in cells.values() if isinstance(v, str)]
    clean = (max(map(len, strings), default=0) <= MAX_CELL
             and not _SUSPECT.search("\t".join(strings)))  # the common case, in one search
    if not clean:
        for name in KNOWN[1:]:
            if _HEADER_UNSAFE.search(text[name]):
                return (f"{name} contains a line break or NUL (not allowed: it would reach mail "
                        "headers)")
    if not text["role"]:
        return "role is empty"
    return None if clean else _cell_problem(cells)


def _cell_problem(cells: dict[str, Any]) -> str | None:
    for name, value in cells.items():
        if not isinstance(value, str):
            continue
        if len(value) > MAX_CELL:
            return f"{name} is {len(value):,} characters long (at most {MAX_CELL:,})"
        found = _CONTROL.search(value)
        if found:
            return f"{name} contains the control character U+{ord(found.group()):04X}: delete it"
    return None


def to_row(person: Stakeholder) -> dict[str, Any]:
    """The stakeholders-table row for a person (tags as ``;a;b;`` for LIKE matching)."""
    return {
        "email": person.key, "display_email": person.email, "first_name": person.first_name,
        "last_name": person.last_name, "role": person.role, "organisation": person.organisation,
        "borough": person.borough, "job_title": person.job_title,
        "tags": ";" + ";".join(person.tags) + ";",
        "attributes": json.dumps(dict(person.attributes), ensure_ascii=False, default=str),
        "source": person.source,
    }


def from_row(row: Mapping[str, Any]) -> Stakeholder:
    return Stakeholder(
        email=row["display_email"], first_name=row["first_name"], last_name=row["last_name"],
        role=row["role"], organisation=row["organisation"], borough=row["borough"],
        job_title=row["job_title"], tags=tuple(t for t in row["tags"].split(";") if t),
        attributes=json.loads(row["attributes"]), source=row["source"],
    )
