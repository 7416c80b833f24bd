"""One owner per question, checked on the source: SQL only in the store (and the report's
metrics), a pure timeline, and sending and tracking that do not import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "comms"
SENDING = ("comms.dispatch", "comms.message", "comms.render", "comms.mime", "comms.invite",
           "comms.transports")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module the file imports (relative imports resolved), at any depth in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def modules(under: str = "") -> list[Path]:
    return sorted(p for p in (PACKAGE / under).rglob("*.py") if "migrations" not in p.parts)


def test_only_the_store_and_the_report_metrics_speak_sql() -> None:
    allowed = (PACKAGE / "store", PACKAGE / "report")
    offenders = [module_name(p) for p in modules()
                 if not p.is_relative_to(allowed[0]) and not p.is_relative_to(allowed[1])
                 and any(i == "sqlalchemy" or i.startswith("sqlalchemy.") for i in imports(p))]
    assert offenders == []


def test_the_timeline_is_pure() -> None:
    """Importing the timeline loads no database library: it takes its facts as values."""
    code = "import sys, comms.plan; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('sqlalchemy', 'alembic', 'psycopg', 'sqlite3') or m.startswith('comms.store')))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_sending_and_tracking_do_not_import_each_other() -> None:
    def is_sending(name: str) -> bool:
        return any(name == s or name.startswith(f"{s}.") for s in SENDING)

    tracking = {module_name(p): imports(p) for p in modules("tracking")}
    sending = {module_name(p): imports(p) for p in modules() if is_sending(module_name(p))}
    assert {m: sorted(i for i in found if is_sending(i))
            for m, found in tracking.items() if any(is_sending(i) for i in found)} == {}
    assert {m: sorted(i for i in found if i.startswith("comms.tracking"))
            for m, found in sending.items() if any(i.startswith("comms.tracking")
                                                   for i in found)} == {}


def test_the_checks_see_imports() -> None:
    """The checks above read real imports (relative ones included), so they can fail."""
    assert "comms.store.sends" in imports(PACKAGE / "dispatch.py")
    assert "sqlalchemy" in imports(PACKAGE / "store" / "sends.py")
    assert "comms.store" in imports(PACKAGE / "tracking" / "ingest.py")
