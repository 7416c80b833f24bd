"""The ``only_if`` conditions, declared once.

Each key of ``OnlyIf`` (comms/campaign.py) carries a :class:`Condition` in its annotation: what
the key refers to (checked by ``validate``), whether it is evaluated at the moment of sending
(``comms plan`` then says "conditional"), and the test the store compiles to SQL
(comms/store/targets.py, one compiler per ``test``). Adding a condition is one line there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from .responses import Kind

Test = Literal["rsvp", "rsvp_event", "attendance", "response", "pair", "roles", "tags"]


@dataclass(frozen=True, slots=True)
class Condition:
    """How one ``only_if`` key is checked, referenced and compiled."""

    test: Test
    refers_to: Literal["step", "event"] | None = None
    send_time: bool = True  # False: it narrows the audience, known before sending
    wanted: bool = True  # False: the person must *not* have it
    kinds: tuple[Kind, ...] = ()  # for ``response`` tests: the response kinds that count


def declared(model: type[BaseModel]) -> dict[str, Condition]:
    """The condition of each key of an ``only_if`` model."""
    out = {}
    for name, info in model.model_fields.items():
        found = [m for m in info.metadata if isinstance(m, Condition)]
        if found:
            out[name] = found[0]
    return out


def given(only_if: BaseModel | None) -> Iterator[tuple[str, Condition, Any]]:
    """The keys set in ``only_if`` with their condition and value."""
    if only_if is None:
        return
    for name, condition in declared(type(only_if)).items():
        value = getattr(only_if, name)
        if value not in (None, [], ()):
            yield name, condition, value


def is_conditional(only_if: BaseModel | None) -> bool:
    """Whether who gets the step is only known at the moment of sending."""
    return any(c.send_time for _, c, _ in given(only_if))
