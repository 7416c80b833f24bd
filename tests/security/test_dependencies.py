"""Dependencies: minimums past the known fixes, everything used directly declared, and a lock
file that the set-up commands and CI install from (and that agrees with pyproject.toml)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIXED = {"starlette": "0.49.1", "python-multipart": "0.0.18", "h11": "0.16.0",
         "cryptography": "44.0.1", "jinja2": "3.1.6"}


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    found += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in found}


def locked() -> dict[str, Version]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", (ROOT / "requirements.lock").read_text(),
                      flags=re.M)
    return {canonicalize_name(name): Version(version) for name, version in pins}


def test_minimums_are_past_the_known_fixes() -> None:
    requirements = declared()
    for name, fixed in FIXED.items():
        assert name in requirements, f"{name} is used but not declared"
        specifier = requirements[name].specifier
        floors = [Version(s.version) for s in specifier if s.operator in (">=", "==", "~=")]
        assert floors and min(floors) >= Version(fixed), (name, str(specifier))
        assert Version(fixed) in specifier


def test_everything_imported_directly_is_declared() -> None:
    imported = set()
    for path in (ROOT / "comms").rglob("*.py"):
        imported |= set(re.findall(r"^\s*(?:from|import) ([a-z_][a-z0-9_]*)",
                                   path.read_text(), flags=re.M))
    distributions = metadata.packages_distributions()
    requirements = declared()
    for module in sorted(imported):
        if module == "comms" or module not in distributions:
            continue  # the standard library, or comms itself
        names = {canonicalize_name(d) for d in distributions[module]}
        assert names & set(requirements), f"comms imports {module} ({names}) but does not declare it"


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = locked()
    for name, requirement in declared().items():
        assert name in pins, f"{name} is not in requirements.lock: refresh it (README, Development)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_installs_go_through_the_lock() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.count("pip install -c requirements.lock ") == 1
    assert readme.count("pip install -c requirements.lock -e") == 2
    pins = locked()
    for name, version in pins.items():  # this environment was installed from it
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # a platform marker left it out here
        assert installed == version, (name, installed, version)
