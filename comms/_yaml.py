"""YAML loading that remembers where every value stood, so errors can name the line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class Located:
    """Parsed YAML data with the 1-based line of each mapping key / sequence item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Sequence[str | int]) -> int:
        """Line of the deepest part of ``loc`` that the file has (the whole file: line 1)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def error(self, loc: Sequence[str | int], message: str, *, warning: bool = False) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line(loc), key=dotted(loc) or None,
                           warning=warning)


def dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: Path, display: Path | None = None) -> Located:
    """Parse one YAML document; raise ``ConfigError`` naming the line on a syntax error."""
    shown = display or path
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", path=shown) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        located = Located(shown, None)
        if node is None:
            return located
        errors: list[ConfigError] = []
        _walk(node, (), located, errors)
        if errors:
            raise errors[0]
        located.data = loader.construct_document(node)
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"YAML syntax: {exc.problem or exc}", path=shown, line=line) from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, loc: Loc, out: Located, errors: list[ConfigError]) -> None:
    out.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                errors.append(ConfigError(f"duplicate key '{key}' (first at line {seen[key]})",
                                          path=out.path, line=line))
            seen[key] = line
            out.lines[loc + (key,)] = line
            _walk(value_node, loc + (key,), out, errors)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), out, errors)


def validate(model: type[M], located: Located) -> M:
    """Validate parsed data into ``model``; every pydantic error becomes a located ConfigError."""
    try:
        return model.model_validate(located.data if located.data is not None else {})
    except ValidationError as exc:
        raise ValidationErrors([
            located.error(_clean_loc(e["loc"]), _message(e)) for e in exc.errors()
        ]) from None


class ValidationErrors(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.location_message() for e in errors))


def _clean_loc(loc: Sequence[Any]) -> Loc:
    # pydantic adds union-member and validator names to ``loc``; keep only data keys.
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int) or not (
            part.startswith(("function-", "union[")) or "[" in part or part in {"tagged-union"}
        ):
            out.append(part)
    return tuple(out)


def _message(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling against the README's key reference)"
    if kind == "missing":
        return "required key is missing"
    return msg.removeprefix("Value error, ")


def load_model(model: type[M], path: Path, display: Path | None = None) -> tuple[M, Located]:
    """Parse one file and validate it into ``model`` (errors carry the file and line)."""
    located = load(path, display)
    return validate(model, located), located


def json_schema(model: type[BaseModel], title: str) -> dict[str, object]:
    """The JSON Schema of a file kind, for editors' autocompletion."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema
