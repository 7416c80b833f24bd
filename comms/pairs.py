"""Mentoring pairs: ``pairs/*.csv``, one file per matching round, columns ``mentor,mentee``
(addresses) and an optional ``note``.

A mentee appears once per round and a mentor any number of times, so within a round a pair is
known by its mentee: the ledger keys an introduction (campaign, step, occurrence, pair) by
recording it against the mentee. A re-match goes in a new round file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ._types import email_key
from .audience import MAX_CELL, Stakeholder
from .errors import ConfigError

if TYPE_CHECKING:
    from .campaign import Campaign

COLUMNS = ("mentor", "mentee")
OPTIONAL = ("note",)
MENTOR_ROLE = "mentor"


@dataclass(frozen=True, slots=True)
class Pair:
    round: str
    mentor: str  # case-folded addresses
    mentee: str
    note: str = ""
    line: int = 0


@dataclass(slots=True)
class Rounds:
    """Every round read from ``pairs/``, with every problem found."""

    pairs: dict[str, list[Pair]] = field(default_factory=dict)
    problems: list[ConfigError] = field(default_factory=list)

    def of(self, round_id: str) -> list[Pair]:
        return self.pairs.get(round_id, [])


def read_rounds(root: Path, people: Iterable[Stakeholder]) -> Rounds:
    """Read ``root/pairs/*.csv`` and check each pair against the directory."""
    rounds = Rounds()
    folder = root / "pairs"
    if not folder.is_dir():
        return rounds
    by_email = {person.key: person for person in people}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv"):
        shown = path.relative_to(root)
        rounds.pairs[path.stem] = _read_round(path, shown, by_email, rounds.problems)
    return rounds


def _read_round(path: Path, shown: Path, people: Mapping[str, Stakeholder],
                problems: list[ConfigError]) -> list[Pair]:
    def problem(line: int, message: str) -> None:
        problems.append(ConfigError(message, path=shown, line=line))

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        problem(1, f"cannot read file: {exc}")
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        problem(1, f"CSV: {exc}")
        return []
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS + OPTIONAL]
    if missing or unknown:
        problem(1, f"the columns are mentor,mentee and optionally note (found: "
                f"{','.join(header) or 'nothing'})")
        return []
    pairs: list[Pair] = []
    mentees: dict[str, int] = {}
    line = reader.line_num + 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                complete = len(COLUMNS) <= len(cells) <= len(header)  # the note may be left off
                pair = _row(dict(zip(header, cells, strict=False)), complete,
                            line, people, mentees, problem, path.stem)
                if pair is not None:
                    mentees[pair.mentee] = line
                    pairs.append(pair)
            line = reader.line_num + 1
    except csv.Error as exc:
        problem(line, f"CSV: {exc}")
    return pairs


def _row(cells: dict[str, str], complete: bool, line: int, people: Mapping[str, Stakeholder],
         mentees: Mapping[str, int], say: Callable[[int, str], None],
         round_id: str) -> Pair | None:
    if not complete:
        say(line, "expected mentor,mentee[,note] on this line")
        return None
    mentor, mentee = email_key(cells["mentor"].strip()), email_key(cells["mentee"].strip())
    note = cells.get("note", "").strip()
    found = None
    for column, address in (("mentor", mentor), ("mentee", mentee)):
        if not address:
            found = f"no {column} address"
        elif address not in people:
            found = f"{column} {address} is not in the directory (stakeholders/)"
        if found:
            break
    if found is None:
        if mentor == mentee:
            found = f"{mentor} is paired with themselves"
        elif people[mentor].role.lower() != MENTOR_ROLE:
            found = f"mentor {mentor} has the role '{people[mentor].role}', not '{MENTOR_ROLE}'"
        elif people[mentee].role.lower() == MENTOR_ROLE:
            found = f"mentee {mentee} has the role '{MENTOR_ROLE}'"
        elif mentee in mentees:
            found = (f"mentee {mentee} is paired twice in this round (first on line "
                     f"{mentees[mentee]}): a mentee has one mentor per round")
        elif len(note) > MAX_CELL:
            found = f"the note is over {MAX_CELL:,} characters"
    if found:
        say(line, found)
        return None
    return Pair(round=round_id, mentor=mentor, mentee=mentee, note=note, line=line)


def introductions(campaigns: Iterable[Campaign]) -> dict[str, list[tuple[str, str]]]:
    """Per round: the (campaign, step) of every ``introduce`` step that names it."""
    found: dict[str, list[tuple[str, str]]] = {}
    for campaign in campaigns:
        for step in campaign.steps:
            if step.kind == "introduce" and step.pairs:
                found.setdefault(step.pairs, []).append((campaign.id, step.id))
    return found
