"""Annotated input types shared by the file schemas: addresses, ids, header-safe text."""

from __future__ import annotations

from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StringConstraints

HEADER_UNSAFE = ("\r", "\n", "\x00")


def normalise_email(value: str) -> str:
    """Check address syntax (no DNS) and return it with the domain lower-cased."""
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address {value!r}: {exc}") from None
    return checked.normalized


def email_key(value: str) -> str:
    """The case-folded form addresses are compared and stored by."""
    return value.strip().casefold()


def header_safe(value: str) -> str:
    if any(c in value for c in HEADER_UNSAFE):
        raise ValueError("line breaks and NUL characters are not allowed here (header injection)")
    return value


Email = Annotated[str, AfterValidator(normalise_email)]
HeaderText = Annotated[str, AfterValidator(header_safe)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
