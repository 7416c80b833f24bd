"""The README is part of the product: every command, key and setting is documented there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest

from comms import campaign, schedule
from comms.cli import cli
from comms.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "comms") -> list[str]:
    found = []
    for name, command in group.commands.items():
        full = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found += commands(command, full)
        else:
            found.append(full)
    return found


@pytest.mark.parametrize("command", commands(cli))
def test_every_command_is_documented(command: str) -> None:
    assert f"`{command}" in README


def keys(schema: dict[str, Any], node: dict[str, Any] | None = None) -> set[str]:
    node = schema if node is None else node
    found: set[str] = set()
    if "$ref" in node:
        return keys(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
    for name, sub in node.get("properties", {}).items():
        found.add(name)
        found |= keys(schema, sub)
    for combinator in ("anyOf", "allOf", "oneOf"):
        for sub in node.get(combinator, []):
            found |= keys(schema, sub)
    if "items" in node:
        found |= keys(schema, node["items"])
    return found


@pytest.mark.parametrize("module", [campaign, schedule])
def test_every_file_key_is_documented(module: Any) -> None:
    documented = set(re.findall(r"`(?:[a-z_]+(?:\[\])?\.)*([a-z_]+)`", README))
    missing = keys(module.json_schema()) - documented
    assert not missing, f"undocumented keys: {sorted(missing)}"


def test_every_setting_is_documented() -> None:
    missing = [name for name in Settings.model_fields if f"COMMS_{name.upper()}" not in README]
    assert not missing
