"""Bad input is refused cleanly: for every case of ``tests/corpus/``, ``comms validate`` and
``comms send`` exit 2 naming the place (``path:line: message``), print no traceback, write
nothing (no store, no outbox), and take under 5 s and 200 MB.

A case is a folder named ``KIND-what``: the files that replace or add to a copy of the example
project (``dotenv`` becomes ``.env``, as git ignores ``.env`` files), ``expected.txt`` (the
``path:line: message`` both commands must print), and optionally ``env.json`` (environment
variables; ``{project}`` stands for the project's folder), ``command.json`` (the send; default
``send nmdi-awareness --step launch``) and ``stage.txt`` (``preflight``: only rendering or the
clock finds it: ``comms send`` calls ``preflight.check_campaign`` before it writes).
The cases run in helper processes — this file run as a script — which reset their peak memory
before each case and report one JSON line per case.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
PROJECT_PARTS = ("campaigns", "templates", "schedules", "stakeholders", "pairs")
CASE_FILES = {"expected.txt", "env.json", "command.json", "stage.txt"}
DEFAULT_SEND = ["send", "nmdi-awareness", "--step", "launch"]
MAX_SECONDS, MAX_MB, CASE_TIMEOUT = 5.0, 200.0, 30
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.txt").is_file())
KINDS = ("yaml", "tpl", "csv", "syaml", "schedule", "toml", "dotenv", "env")


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """Every case, run once in helper processes (one per CPU, up to 4, each a share of the
    cases) without the outer COMMS_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("COMMS_")}
    workers = max(1, min(4, os.cpu_count() or 1))
    helpers = [subprocess.Popen([sys.executable, __file__, *CASES[i::workers]], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(workers)]
    found, errors = {}, []
    for helper in helpers:
        out, err = helper.communicate(timeout=600)
        errors.append(err[-3000:])
        for line in out.splitlines():
            if line.startswith("{"):
                result = json.loads(line)
                found[result["case"]] = result
    assert len(found) == len(CASES), "the corpus helpers stopped early:\n" + "\n".join(errors)
    return found


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_cleanly(case: str, results: dict[str, dict[str, Any]]) -> None:
    result = results[case]
    expected = (CORPUS / case / "expected.txt").read_text(encoding="utf-8").strip()
    refused(result["validate"], expected)
    assert result["validate"]["seconds"] < MAX_SECONDS
    assert result["peak_mb"] < MAX_MB
    refused(result["send"], expected)
    assert result["written"] == []
    assert result["seconds"] < MAX_SECONDS


def refused(ran: dict[str, Any], expected: str) -> None:
    """The command exited 2, printed the expected line and no traceback."""
    assert ran["traceback"] is None, ran["traceback"]
    assert "Traceback" not in ran["output"]
    assert ran["exit_code"] == 2, ran["output"]
    assert expected in ran["output"], f"expected {expected!r} in:\n{ran['output']}"


def test_the_corpus_covers_every_kind_of_input() -> None:
    kinds = {kind: [c for c in CASES if c.startswith(f"{kind}-")] for kind in KINDS}
    assert len(CASES) >= 100
    assert all(kinds.values()), kinds
    assert sum(map(len, kinds.values())) == len(CASES), "every case is named KIND-what"
    for case in CASES:
        expected = (CORPUS / case / "expected.txt").read_text(encoding="utf-8").strip()
        where = expected.split(": ", 1)[0]
        assert ":" in where or where in ("environment", "command line"), \
            f"{case}: the expected message names no line: {expected!r}"


# --- the helper process -------------------------------------------------------------------------


def _run_all() -> None:
    """Run every case (or those named on the command line), one JSON line each."""
    from click.testing import CliRunner

    from comms.cli import cli

    for name in [k for k in os.environ if k.upper().startswith("COMMS_")]:
        del os.environ[name]
    signal.signal(signal.SIGALRM, _timed_out)
    for case in sys.argv[1:] or CASES:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(_run_case(CliRunner(), cli, case, Path(tmp))), flush=True)  # noqa: T201


def _run_case(runner: Any, cli: Any, case: str, tmp: Path) -> dict[str, Any]:
    folder, project = CORPUS / case, tmp / "project"
    _make_project(folder, project)
    env = {k: v.replace("{project}", str(project))
           for k, v in _json(folder / "env.json", {}).items()}
    send = _json(folder / "command.json", DEFAULT_SEND)
    before = _snapshot(tmp)
    _release_memory()
    Path("/proc/self/clear_refs").write_text("5")  # the peak memory starts again from here
    started = time.monotonic()
    runs = {name: _invoke(runner, cli, [*args, "--project", str(project)], env)
            for name, args in (("validate", ["validate"]), ("send", send))}
    seconds = time.monotonic() - started
    after = _snapshot(tmp)
    written = sorted(path for path in after if before.get(path) != after[path])
    return {"case": case, **runs, "written": written, "seconds": round(seconds, 3),
            "peak_mb": round(_peak_kb() / 1024, 1)}


def _make_project(folder: Path, project: Path) -> None:
    project.mkdir()
    for part in PROJECT_PARTS:
        shutil.copytree(ROOT / part, project / part)
    for path in folder.rglob("*"):
        if path.is_file() and path.name not in CASE_FILES:
            relative = path.relative_to(folder)
            target = project / (".env" if relative == Path("dotenv") else relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _invoke(runner: Any, cli: Any, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    signal.alarm(CASE_TIMEOUT)
    try:
        result = runner.invoke(cli, args, env=env, catch_exceptions=True)
    except _Timeout:
        return {"exit_code": None, "output": "", "traceback": f"over {CASE_TIMEOUT} s",
                "seconds": CASE_TIMEOUT}
    finally:
        signal.alarm(0)
    failure = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        failure = "".join(traceback.format_exception(*result.exc_info))
    return {"exit_code": result.exit_code, "output": result.output, "traceback": failure,
            "seconds": round(time.monotonic() - started, 3)}


def _release_memory() -> None:
    """Give freed memory back, so that one case's peak does not start at the last one's (a
    full collection would cost more than most cases)."""
    gc.collect(1)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def _peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class _Timeout(BaseException):
    """A case ran past ``CASE_TIMEOUT`` (not an Exception: the runner must not catch it)."""


def _timed_out(signum: int, frame: Any) -> None:
    raise _Timeout()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _run_all()
