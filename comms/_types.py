"""Annotated input types shared by the file schemas: addresses, ids, header-safe text, time
zones, local times, bounded delays."""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, WithJsonSchema

HEADER_UNSAFE = ("\r", "\n", "\x00")


FIRST_YEAR, LAST_YEAR = 1970, 2999  # dates outside these are typos (and overflow later)
# A dot-atom local part of plain ASCII: email_validator leaves such a part as it is, so an
# address made of one and an already-checked domain needs no second look (a directory of
# 100,000 people has a few dozen domains).
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MAX_LOCAL, _MAX_ADDRESS = 64, 254


def normalise_email(value: str) -> str:
    """Check address syntax (no DNS) and return it with the domain lower-cased."""
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if (at and value.isascii() and len(local) <= _MAX_LOCAL and len(value) <= _MAX_ADDRESS
            and _PLAIN_LOCAL.fullmatch(local)):
        checked = _domain(domain)
        if checked is not None:
            return f"{local}@{checked}"
    return _validated(value)


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normalised form of a domain email_validator accepts (None: it refuses it)."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


def _validated(value: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address {value!r}: {exc}") from None
    return checked.normalized


def email_key(value: str) -> str:
    """The case-folded form addresses are compared and stored by (``value`` itself when it is
    that already: the directory's sets and maps of keys hold no second copy of each address)."""
    key = value.strip().casefold()
    return value if key == value else key


def header_safe(value: str) -> str:
    if any(c in value for c in HEADER_UNSAFE):
        raise ValueError("line breaks and NUL characters are not allowed here (header injection)")
    return value


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def slug(value: str) -> str:
    """An id: lower-case letters, digits and hyphens."""
    if not _SLUG.match(value) or len(value) > 64:
        raise ValueError(f"{value!r} is not an id: use lower-case letters, digits and hyphens "
                         "(like nmdi-awareness), at most 64 characters")
    return value


def known_zone(value: str) -> str:
    """An IANA time zone name that this machine knows."""
    try:
        ZoneInfo(value)
    except (KeyError, ValueError, OSError):  # not found (a KeyError), a malformed or long key
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/London)") from None
    return value


def local_time(value: datetime) -> datetime:
    """A wall-clock time without an offset (its zone comes from elsewhere), in a sane year."""
    if value.tzinfo is not None:
        raise ValueError("write a local time without an offset, like 2026-12-01 09:00 (the time "
                         "zone comes from the event, the schedule or COMMS_TIMEZONE)")
    sane_date(value.date())
    return value


def sane_date(value: date) -> date:
    """A date between ``FIRST_YEAR`` and ``LAST_YEAR`` (later arithmetic cannot overflow)."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"the year {value.year} is out of range ({FIRST_YEAR}-{LAST_YEAR}): a typo?")
    return value


def at_most(limit: int, unit: str, what: str = "10 years") -> AfterValidator:
    """A bound on one part of a delay, so that the whole can never overflow."""

    def check(value: int) -> int:
        if value > limit:
            raise ValueError(f"at most {limit:,} {unit} ({what}): a longer delay is surely a typo")
        return value

    return AfterValidator(check)


Email = Annotated[str, AfterValidator(normalise_email)]
HeaderText = Annotated[str, AfterValidator(header_safe)]
Slug = Annotated[str, AfterValidator(slug), WithJsonSchema(
    {"type": "string", "pattern": _SLUG.pattern, "maxLength": 64})]
TimeZone = Annotated[str, AfterValidator(known_zone)]
LocalTime = Annotated[datetime, AfterValidator(local_time)]
SaneDate = Annotated[date, AfterValidator(sane_date)]


def file_safe(text: str) -> str:
    """``text`` as a file name: anything but lower-case letters, digits and ``.@-`` becomes
    ``_`` (``jane.plus+nmdi@x`` → ``jane.plus_nmdi@x``)."""
    return re.sub(r"[^a-z0-9.@-]+", "_", text.lower())
