"""Mozilla ical.js as a second reader of our .ics files: runs ``node tests/js/instants.mjs``.

Needs Node.js and ``npm ci --prefix tests/js``; without them the caller's test is skipped here
and fails in CI (``COMMS_TEST_REQUIRE_ALL=1``), through ``tests.conftest.need``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from tests.conftest import ROOT, need

SCRIPT = "tests/js/instants.mjs"  # relative to the repository root, where node runs
PACKAGE = ROOT / "tests" / "js" / "node_modules" / "ical.js"

Ics = bytes | str


def icaljs_instants(
    calendars: Iterable[Ics | tuple[Ics, Sequence[datetime]]],
    probes: Sequence[datetime] = (),
) -> list[dict[str, Any]]:
    """What ical.js reads in each calendar, in order (see tests/js/instants.mjs for the shape).

    A calendar given as ``(ics, probes)`` has its own probe instants instead of ``probes``.
    """
    node = shutil.which("node")
    need(node is not None, "Node.js (node) is not installed")
    need(PACKAGE.is_dir(), "ical.js is not installed: run npm ci --prefix tests/js")
    assert node is not None
    items: list[object] = []
    for calendar in calendars:
        if isinstance(calendar, tuple):
            ics, own = calendar
            items.append({"ics": _text(ics), "probes": [_iso(p) for p in own]})
        else:
            items.append(_text(calendar))
    payload = json.dumps({"calendars": items, "probes": [_iso(p) for p in probes]})
    done = subprocess.run([node, SCRIPT], cwd=ROOT, input=payload, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{SCRIPT} failed (exit {done.returncode}):\n{done.stderr}")
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def _text(ics: Ics) -> str:
    return ics.decode() if isinstance(ics, bytes) else ics


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"probe {moment} must be an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
