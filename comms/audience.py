"""The stakeholder directory: CSV/YAML import with per-row checks, and the row it is stored as."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _yaml
from ._types import HEADER_UNSAFE, email_key, normalise_email
from .errors import ConfigError

REQUIRED = ("email", "first_name", "last_name", "role")
KNOWN = REQUIRED + ("organisation", "borough", "job_title", "tags")
_TAG_SPLIT = re.compile(r"[;,|]")


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
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(ConfigError(f"cannot read file: {exc}", path=shown))
        return []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # "CSV" saved by older Excel
    return _read_csv(text, shown, problems)


def _read_csv(text: str, shown: Path, problems: list[ConfigError]) -> list[Stakeholder]:
    first_line = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        problems.append(ConfigError("empty file: expected a header row", path=shown, line=1))
        return []
    columns = [_column(h) for h in header]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        problems.append(ConfigError(
            f"missing column(s): {', '.join(missing)} (columns are: {', '.join(columns)})",
            path=shown, line=1))
        return []
    people = []
    line = reader.line_num + 1
    for cells in reader:
        if any(c.strip() for c in cells):
            if len(cells) != len(columns):
                problems.append(ConfigError(
                    f"expected {len(columns)} cells, found {len(cells)}", path=shown, line=line))
            else:
                person = _person(dict(zip(columns, cells, strict=True)), shown, line, problems)
                if person:
                    people.append(person)
        line = reader.line_num + 1
    return people


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
        person = _person(cells, shown, located.line((i,)), problems)
        if person:
            people.append(person)
    return people


def _column(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _person(cells: dict[str, Any], shown: Path, line: int,
            problems: list[ConfigError]) -> Stakeholder | None:
    def text(name: str) -> str:
        value = cells.get(name)
        return "" if value is None else str(value).strip()

    try:
        email = normalise_email(text("email"))
    except ValueError as exc:
        problems.append(ConfigError(str(exc), path=shown, line=line))
        return None
    for name in KNOWN[1:]:
        if any(c in text(name) for c in HEADER_UNSAFE):
            problems.append(ConfigError(
                f"{name} contains a line break or NUL (not allowed: it would reach mail headers)",
                path=shown, line=line))
            return None
    if not text("role"):
        problems.append(ConfigError("role is empty", path=shown, line=line))
        return None
    tags = cells.get("tags") or ()
    tag_list = tags if isinstance(tags, list) else _TAG_SPLIT.split(str(tags))
    return Stakeholder(
        email=email, first_name=text("first_name"), last_name=text("last_name"),
        role=text("role").lower(), organisation=text("organisation"), borough=text("borough"),
        job_title=text("job_title"),
        tags=tuple(dict.fromkeys(t.strip().lower() for t in tag_list if str(t).strip())),
        attributes={k: v for k, v in cells.items() if k not in KNOWN and v not in (None, "")},
        source=str(shown), line=line,
    )


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
