"""How fast, how CPU-hungry and how big `comms send` is, next to a naive loop and mailmerge.

Every sender and every server runs as its own process, so the sender's CPU is its own. For each N
(1,000 and 10,000; ``--quick``: 200 and 1,000) the example awareness ``launch`` step goes to N
generated managers over the SendGrid v3 contract and over SMTP (local servers from tests/sinks/),
and the ``workshops`` ``invite`` step goes over the SendGrid contract. See bench/README.md.

    .venv/bin/python bench/bench_send.py [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COMMS = BIN / "comms"
MAILMERGE = BIN / "mailmerge"
NAIVE = Path(__file__).resolve().parent / "naive_send.py"
API_KEY = "SG.bench-key"
CONCURRENCY = 8
COLUMNS = ["email", "first_name", "last_name", "role", "organisation", "borough", "job_title",
           "tags"]
BOROUGHS = ["Bexley", "Bromley", "Greenwich", "Lambeth", "Lewisham", "Southwark"]
SAMPLE = {"email": "robin00000@practices.nhs.example", "first_name": "Robin00000",
          "last_name": "Okafor00000"}
BOUNDARY = "=_bench_boundary_7f3a"


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass
class Run:
    """One measured sending process."""

    tool: str
    target: str
    n: int
    wall: float = 0.0  # process start to exit
    window: float = 0.0  # first to last message arriving at the server
    cpu: float = 0.0  # user + sys of the sending process
    rss_kb: int = 0
    received: int = 0
    sink_cpu: float = 0.0
    problem: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def run_rate(self) -> float:
        return self.n / self.wall if self.wall else 0.0

    @property
    def send_rate(self) -> float:
        return (self.received - 1) / self.window if self.window and self.received > 1 else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.n


# -- inputs -------------------------------------------------------------------------------------

def managers(n: int) -> list[dict[str, str]]:
    return [{
        "email": f"robin{i:05d}@practices.nhs.example", "first_name": f"Robin{i:05d}",
        "last_name": f"Okafor{i:05d}", "role": "manager",
        "organisation": f"{BOROUGHS[i % 6]} PCT", "borough": BOROUGHS[i % 6],
        "job_title": "Practice Manager", "tags": "primary-care;nmdi-cohort-1",
    } for i in range(n)]


def make_project(folder: Path, n: int, *, keep_limit: bool = False) -> Path:
    """The example project with ``n`` managers as its stakeholders and no per-minute limit
    (``keep_limit``: the schedule's own)."""
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(ROOT / part, folder / part)
    for campaign in ("mentoring", "steering-pack"):  # they need pairs/ and its people
        (folder / "campaigns" / f"{campaign}.yaml").unlink(missing_ok=True)
    (folder / "stakeholders").mkdir()
    with open(folder / "stakeholders" / "managers.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(managers(n))
    if keep_limit:
        return folder
    schedule = folder / "schedules" / "uk-working-hours.yaml"
    lines = schedule.read_text(encoding="utf-8").splitlines(keepends=True)
    schedule.write_text("".join(x for x in lines if not x.startswith("max_per_minute:")),
                        encoding="utf-8")
    return folder


def templatise(text: str) -> str:
    """Jinja2 source giving ``text`` back, with the sample recipient's values as placeholders."""
    values = {v: k for k, v in SAMPLE.items()}
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    out, pos = [], 0
    for found in pattern.finditer(text):
        out.append(_raw(text[pos:found.start()]) + "{{ " + values[found.group()] + " }}")
        pos = found.end()
    return "".join(out) + _raw(text[pos:])


def _raw(chunk: str) -> str:
    return "{% raw %}" + chunk + "{% endraw %}" if chunk else ""


def sample_message(project: Path, work: Path) -> dict[str, str]:
    """The launch message comms renders for the sample manager, as templates for the baselines."""
    env = comms_env(work / "preview.db", COMMS_TRANSPORT="outbox",
                    COMMS_OUTBOX_DIR=str(work / "outbox"))
    shown = subprocess.run([str(COMMS), "preview", "nmdi-awareness", "launch", "--to",
                            SAMPLE["email"], "--project", str(project)],
                           env=env, capture_output=True, text=True, check=True).stdout
    head, _, text = shown.partition("\n\n")
    fields = dict(line.split(": ", 1) for line in head.splitlines())
    name, _, address = fields["From"].rpartition(" <")
    campaign = yaml.safe_load((project / "campaigns" / "nmdi-awareness.yaml").read_text("utf-8"))
    html = Path(fields["HTML"]).read_text(encoding="utf-8")
    return {"sender_name": name, "sender_email": address.rstrip(">"),
            "reply_to": campaign["reply_to"], "subject": templatise(fields["Subject"]),
            "text": templatise(text.rstrip("\n") + "\n"), "html": templatise(html)}


def mailmerge_inputs(folder: Path, message: dict[str, str], port: int) -> list[str]:
    template = folder / "mailmerge_template.txt"
    template.write_text(
        "TO: {{ email }}\n"
        f"FROM: {message['sender_name']} <{message['sender_email']}>\n"
        f"REPLY-TO: {message['reply_to']}\n"
        f"SUBJECT: {message['subject']}\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\n\n'
        f"--{BOUNDARY}\nContent-Type: text/plain; charset=utf-8\n\n{message['text']}\n"
        f"--{BOUNDARY}\nContent-Type: text/html; charset=utf-8\n\n{message['html']}\n"
        f"--{BOUNDARY}--\n", encoding="utf-8")
    config = folder / "mailmerge_server.conf"
    config.write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\n", encoding="utf-8")
    return ["--template", str(template), "--config", str(config)]


def compile_comms() -> None:
    """comms's bytecode written once, as an installed package has it: every sender then starts
    from .pyc files, not by compiling its source (PYTHONDONTWRITEBYTECODE would make each run
    compile it again)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "comms")], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def comms_env(database: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COMMS_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(COMMS_DATABASE_URL=f"sqlite:///{database}", COMMS_CONCURRENCY=str(CONCURRENCY),
               COMMS_BASE_URL="https://comms.bench.example",  # required with a real transport
               COMMS_SECRET_KEY="a-bench-signing-key-of-enough-length-0123456789", **settings)
    return env


# -- processes ----------------------------------------------------------------------------------

@dataclass
class Sink:
    address: str  # the SendGrid server's URL, or the SMTP server's port
    log: Path
    process: subprocess.Popen[str]
    cpu: float = 0.0


@contextmanager
def sink(kind: str, log: Path) -> Iterator[Sink]:
    """A server from tests/sinks/ as its own process, logging one JSON line per message."""
    cmd = [sys.executable, "-m", f"tests.sinks.{kind}_server", "--port", "0", "--log", str(log)]
    if kind == "sendgrid":
        cmd += ["--latency", str(LATENCY["sendgrid"]), "--api-key", API_KEY]
    elif LATENCY["smtp"]:
        cmd += ["--latency", str(LATENCY["smtp"])]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    running = Sink(process.stdout.readline().strip(), log, process)
    if not running.address:
        process.wait()
        sys.exit(f"the {kind} server did not start (python -m tests.sinks.{kind}_server)")
    try:
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        running.cpu = usage.ru_utime + usage.ru_stime


def measure(run: Run, cmd: Sequence[str], env: dict[str, str], server: Sink, cwd: Path) -> Run:
    """Run ``cmd`` to its end; its own rusage, and when messages reached the server."""
    errors = cwd / f"{run.tool}-{run.target}-{run.n}.stderr"
    first = last = 0.0
    size = peak_kb = 0
    with open(errors, "w", encoding="utf-8") as err:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        while True:
            peak_kb = max(peak_kb, _own_peak_rss_kb(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            now = time.perf_counter()
            grown = server.log.stat().st_size if server.log.exists() else 0
            if grown != size:
                size, last = grown, now
                first = first or now
            if pid:
                break
            time.sleep(0.005)
    process.returncode = code = os.waitstatus_to_exitcode(status)
    run.wall = now - start
    run.window = last - first
    run.cpu = usage.ru_utime + usage.ru_stime
    # Not usage.ru_maxrss: Linux carries the parent's RSS at fork across execve into it.
    run.rss_kb = peak_kb or usage.ru_maxrss
    run.received = len(_lines(server.log))
    if code != 0:
        tail = errors.read_text(encoding="utf-8").strip().splitlines()[-1:] or ["no message"]
        run.problem = f"exit {code}: {tail[0][:120]}"
    elif run.received != run.n:
        run.problem = f"server received {run.received} of {run.n}"
    return run


def _own_peak_rss_kb(pid: int) -> int:
    """The process's own peak resident set (VmHWM), from its own address space."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def calendar_count(log: Path) -> int:
    """Messages in a SendGrid-server log that carry a text/calendar part or attachment."""
    count = 0
    for line in _lines(log):
        payload = json.loads(line)["payload"]
        types = [c.get("type", "") for c in payload.get("content", [])]
        types += [a.get("type", "") for a in payload.get("attachments", [])]
        count += any(t.lower().startswith("text/calendar") for t in types)
    return count


# -- the runs -----------------------------------------------------------------------------------

# Seconds the SendGrid server holds each reply (--latency), and the SMTP server takes to
# answer each message's final dot (--smtp-latency).
LATENCY = {"sendgrid": 0.0, "smtp": 0.0}


def bench(n: int, work: Path, rows: slice = slice(None)) -> list[Run]:
    folder = work / f"n{n}"
    folder.mkdir()
    project = make_project(folder / "project", n)
    csv_path = project / "stakeholders" / "managers.csv"
    message = sample_message(project, folder)
    template = folder / "message.json"
    template.write_text(json.dumps(message), encoding="utf-8")
    runs = []

    def comms_send(target: str, campaign: str, step: str, kind: str) -> Run:
        with sink(kind, folder / f"{target}.jsonl") as server:
            if kind == "sendgrid":
                settings = {"COMMS_TRANSPORT": "sendgrid", "COMMS_SENDGRID_API_KEY": API_KEY,
                            "COMMS_SENDGRID_HOST": server.address}
            else:
                settings = {"COMMS_TRANSPORT": "smtp", "COMMS_SMTP_HOST": "127.0.0.1",
                            "COMMS_SMTP_PORT": server.address}
            env = comms_env(folder / f"{target}.db", **settings)  # a fresh store each run
            run = measure(Run("comms", target, n),
                          [str(COMMS), "send", campaign, "--step", step, "--project",
                           str(project)], env, server, folder)
        run.sink_cpu = server.cpu
        return run

    def baseline(tool: str, target: str, kind: str) -> Run:
        with sink(kind, folder / f"{tool}-{target}.jsonl") as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith("COMMS_")}
            if tool == "mailmerge":
                cmd = [str(MAILMERGE), *mailmerge_inputs(folder, message, int(server.address)),
                       "--database", str(csv_path), "--no-dry-run", "--no-limit",
                       "--output-format", "raw"]
            elif kind == "sendgrid":
                cmd = [sys.executable, str(NAIVE), "sendgrid", "--url", server.address,
                       "--api-key", API_KEY, "--csv", str(csv_path), "--template", str(template)]
            else:
                cmd = [sys.executable, str(NAIVE), "smtp", "--port", server.address,
                       "--csv", str(csv_path), "--template", str(template)]
            run = measure(Run(tool, target, n), cmd, env, server, folder)
        run.sink_cpu = server.cpu
        return run

    plan = [
        lambda: comms_send("sendgrid", "nmdi-awareness", "launch", "sendgrid"),
        lambda: baseline("naive", "sendgrid", "sendgrid"),
        lambda: comms_send("smtp", "nmdi-awareness", "launch", "smtp"),
        lambda: baseline("naive", "smtp", "smtp"),
        lambda: baseline("mailmerge", "smtp", "smtp"),
        lambda: comms_send("invites", "workshops", "invite", "sendgrid"),
    ]
    for step in plan[rows]:
        run = step()
        if run.target == "invites":
            with_calendar = calendar_count(folder / "invites.jsonl")
            run.notes.append(f"text/calendar in {with_calendar} of {run.received} messages")
        say(f"  N={n:>6,} {run.tool:<9} {run.target:<8} {run.received:>6,} received "
            f"in {run.wall:6.2f} s {run.problem}")
        runs.append(run)
    return runs


# -- the report ---------------------------------------------------------------------------------

def table(runs: list[Run]) -> None:
    head = (f"{'sender':<9} {'to':<8} {'N':>6} {'msgs/s':>7} {'run/s':>7} {'wall s':>7} "
            f"{'CPU s':>6} {'CPU ms/msg':>10} {'RSS MB':>7} {'server CPU s':>12}  notes")
    say(head)
    say("-" * len(head))
    for r in runs:
        notes = "; ".join([*([r.problem] if r.problem else []), *r.notes])
        say(f"{r.tool:<9} {r.target:<8} {r.n:>6} {r.send_rate:>7.0f} {r.run_rate:>7.0f} "
            f"{r.wall:>7.2f} {r.cpu:>6.2f} {r.cpu_ms:>10.3f} {r.rss_kb / 1024:>7.1f} "
            f"{r.sink_cpu:>12.2f}  {notes}")


def verdicts(runs: list[Run], sizes: Sequence[int]) -> None:
    def get(tool: str, target: str, n: int) -> Run:
        return next(r for r in runs if (r.tool, r.target, r.n) == (tool, target, n))

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    small, big = sizes
    say("\nRatios (msgs/s = first to last arrival at the server; CPU = the sending process)")
    for n in sizes:
        for target, other in [("sendgrid", "naive"), ("smtp", "naive"), ("smtp", "mailmerge")]:
            c, o = get("comms", target, n), get(other, target, n)
            say(f"  N={n:>6}  comms/{other:<9} over {target:<8}: msgs/s x{_ratio(c.send_rate, o.send_rate)}"
                f"   CPU/msg x{_ratio(c.cpu_ms, o.cpu_ms)}")
    for target in ("sendgrid", "smtp", "invites"):
        a, b = get("comms", target, small), get("comms", target, big)
        say(f"  comms {target:<8} RSS({big}) / RSS({small}) = {_ratio(b.rss_kb, a.rss_kb)}")

    say("\nTargets (CPU = the whole sending process, start-up included, per message)")
    for n in sizes:
        sg, smtp, inv = get("comms", "sendgrid", n), get("comms", "smtp", n), get("comms", "invites", n)
        mm = get("mailmerge", "smtp", n)
        say(f"  N={n}")
        say(f"    {mark(sg.cpu_ms <= 0.35 and not sg.problem)}  SendGrid CPU <= 0.35 ms/msg: "
            f"{sg.cpu_ms:.3f} (naive {get('naive', 'sendgrid', n).cpu_ms:.3f})")
        cpu_ratio = smtp.cpu_ms / mm.cpu_ms if mm.cpu_ms else float("inf")
        say(f"    {mark(smtp.cpu_ms <= 0.45 and cpu_ratio <= 0.15 and not smtp.problem)}  SMTP "
            f"CPU <= 0.45 ms/msg and <= 0.15 x mailmerge's: {smtp.cpu_ms:.3f} vs "
            f"{mm.cpu_ms:.3f} ms = x{cpu_ratio:.2f}")
        say(f"    {mark(inv.cpu_ms <= 0.45 and not inv.problem)}  invitations CPU <= 0.45 ms/msg: "
            f"{inv.cpu_ms:.3f} ({', '.join(inv.notes)})")
        for target in ("sendgrid", "smtp"):
            c, o = get("comms", target, n), get("naive", target, n)
            ratio = c.send_rate / o.send_rate if o.send_rate else 0.0
            say(f"    {mark(ratio >= 2 and not c.problem)}  {target} msgs/s >= 2 x the naive "
                f"loop's: {c.send_rate:,.0f} vs {o.send_rate:,.0f} = x{ratio:.2f}")
    for target in ("sendgrid", "smtp", "invites"):
        a, b = get("comms", target, small), get("comms", target, big)
        ratio = b.rss_kb / a.rss_kb if a.rss_kb else float("inf")
        say(f"  {mark(ratio <= 1.5)}  RSS({big}) <= 1.5 x RSS({small}), comms {target}: "
            f"{b.rss_kb / 1024:.1f} / {a.rss_kb / 1024:.1f} MB = x{ratio:.2f}")


def scale_runs(keep: bool, sizes: tuple[int, int] = (10_000, 100_000)) -> None:
    """comms to the SendGrid contract at 10,000 and 100,000: memory and rate as N grows."""
    with work_folder(keep) as work:
        say(f"SendGrid contract, N = {sizes[0]:,} and {sizes[1]:,}; work folder {work}")
        small, big = (bench(n, work, slice(0, 1))[0] for n in sizes)
        say("")
        table([small, big])
        rss = big.rss_kb / small.rss_kb if small.rss_kb else float("inf")
        rate = big.send_rate / small.send_rate if small.send_rate else 0.0
        say(f"{'PASS' if rss <= 1.5 else 'FAIL'}: RSS({big.n:,}) <= 1.5 x RSS({small.n:,}): "
            f"{big.rss_kb / 1024:.1f} / {small.rss_kb / 1024:.1f} MB = x{rss:.2f}")
        say(f"{'PASS' if rate >= 0.9 else 'FAIL'}: msgs/s({big.n:,}) >= 0.9 x msgs/s({small.n:,}): "
            f"{big.send_rate:,.0f} / {small.send_rate:,.0f} = x{rate:.2f}")


def startup_runs(keep: bool, runs: int = 5) -> None:
    """Wall time from start to exit: `comms --help`, and `comms send` of one message to the
    SendGrid contract with a new SQLite store each run (the directory imported, checked, sent)."""
    with work_folder(keep) as work:
        helps = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([str(COMMS), "--help"], env=comms_env(work / "help.db"), check=True,
                           stdout=subprocess.DEVNULL)
            helps.append(time.perf_counter() - start)
        folders = [work / f"send-{i}" for i in range(runs)]
        for folder in folders:
            folder.mkdir()
        sends = [bench(1, folder, slice(0, 1))[0] for folder in folders]
        for run in sends:
            if run.problem:
                sys.exit(f"one-message send: {run.problem}")
        walls = sorted(run.wall for run in sends)
        cpus = sorted(run.cpu for run in sends)
        helps.sort()
        say(f"comms --help: {', '.join(f'{t:.3f}' for t in helps)} s")
        say(f"one-message comms send: {', '.join(f'{t:.3f}' for t in walls)} s wall, "
            f"CPU {', '.join(f'{t:.3f}' for t in cpus)} s")
        median_help, median_send = helps[runs // 2], walls[runs // 2]
        say(f"{'PASS' if median_help <= 0.15 else 'FAIL'}: comms --help <= 0.15 s "
            f"(median {median_help:.3f})")
        say(f"{'PASS' if median_send <= 0.5 else 'FAIL'}: one-message send <= 0.5 s "
            f"(median {median_send:.3f})")


@contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    """A fresh folder for a bench's projects, stores and logs: removed after, unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix="comms-bench-"))
    try:
        yield work
    finally:
        if keep:
            say(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def check_tools() -> None:
    missing = [f"{path} ({how})" for path, how in [
        (COMMS, "pip install -e ."), (MAILMERGE, f"{BIN / 'pip'} install mailmerge")]
        if not path.exists()]
    for module, how in [("aiosmtpd", "pip install -e '.[test]'"), ("sendgrid", "pip install -e .")]:
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the {module} package ({how})")
    if missing:
        sys.exit("bench needs: " + "; ".join(missing))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 200 and 1,000 instead of "
                        "1,000 and 10,000")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, stores)")
    parser.add_argument("--latency", type=float, default=None, metavar="SECONDS",
                        help="SendGrid rows only, at 0 and at this server latency (e.g. 0.15)")
    parser.add_argument("--smtp-latency", type=float, default=None, metavar="SECONDS",
                        help="SMTP rows only, at 0 and with the server taking this long to "
                        "accept each message (e.g. 0.05)")
    parser.add_argument("-n", type=int, default=None, help="one N instead of the two")
    parser.add_argument("--scale", action="store_true", help="comms to the SendGrid contract "
                        "at N = 10,000 and 100,000 only: memory and rate as N grows")
    parser.add_argument("--startup", action="store_true", help="wall time of `comms --help` "
                        "and of a one-message `comms send`, five runs each")
    args = parser.parse_args(argv)
    compile_comms()
    if args.scale:
        return scale_runs(args.keep)
    if args.startup:
        return startup_runs(args.keep)
    if args.latency is not None:
        return latency_runs(args.latency, args.n or 1000, args.keep)
    if args.smtp_latency is not None:
        return smtp_latency_runs(args.smtp_latency, args.n or 1000, args.keep)
    check_tools()
    sizes = (200, 1000) if args.quick else (1000, 10000)
    with work_folder(args.keep) as work:
        say(f"comms send, concurrency {CONCURRENCY}, {os.cpu_count()} CPUs; work folder {work}")
        runs = [run for n in sizes for run in bench(n, work)]
        say("")
        table(runs)
        verdicts(runs, sizes)


def at_latencies(kind: str, latency: float, n: int, work: Path,
                 plan: Sequence[tuple[slice, bool]],
                 one_at_a_time_max: int) -> list[tuple[float, Run]]:
    """The bench's rows ``plan`` (each: which row, and whether it sends one message at a time)
    with the ``kind`` server at 0 and at ``latency`` s; a one-at-a-time sender sends at most
    ``one_at_a_time_max`` with latency (its rate is steady). Prints them as a table."""
    rows = []
    for at in (0.0, latency):
        LATENCY[kind] = at
        folder = work / f"{kind}-latency-{at:g}"
        folder.mkdir()
        for part, one_at_a_time in plan:
            size = min(n, one_at_a_time_max) if at and one_at_a_time else n
            (folder / str(part.start)).mkdir()
            rows += [(at, run) for run in bench(size, folder / str(part.start), part)]
    LATENCY[kind] = 0.0
    say("")
    say("| latency | sender | to | N | received | msgs/s | CPU ms/msg |")
    say("|---|---|---|---|---|---|---|")
    for at, run in rows:
        say(f"| {at * 1000:g} ms | {run.tool} | {run.target} | {run.n:,} | {run.received:,} | "
            f"{run.send_rate:,.0f} | {run.cpu_ms:.3f} |")
    say("")
    return rows


def latency_runs(latency: float, n: int, keep: bool) -> None:
    """comms (awareness and invitations) and the naive loop to the SendGrid contract at 0 and
    ``latency`` s, as ratios (the naive loop is one request at a time: N / 6.7 s at 150 ms, so
    at most 300 of them)."""
    with work_folder(keep) as work:
        say(f"SendGrid contract, N = {n:,}, {os.cpu_count()} CPUs; work folder {work}")
        rows = at_latencies("sendgrid", latency, n, work, [
            (slice(0, 1), False), (slice(1, 2), True), (slice(5, 6), False)], 300)

        def row(at: float, tool: str, target: str) -> Run:
            return next(r for a, r in rows if a == at and (r.tool, r.target) == (tool, target))

        for at in (0.0, latency):
            comms, naive = row(at, "comms", "sendgrid"), row(at, "naive", "sendgrid")
            say(f"at {at * 1000:g} ms: comms/naive msgs/s {_ratio(comms.send_rate, naive.send_rate)}"
                f", CPU per message {_ratio(comms.cpu_ms, naive.cpu_ms)}")
        for target in ("sendgrid", "invites"):
            slow = row(latency, "comms", target)
            say(f"{'PASS' if slow.send_rate >= 1000 else 'FAIL'}: {target} >= 1,000 msgs/s at "
                f"{latency * 1000:g} ms ({slow.send_rate:,.0f})")
        fast = row(0.0, "comms", "sendgrid")
        say(f"{'PASS' if fast.cpu_ms <= 0.35 else 'FAIL'}: CPU <= 0.35 ms/msg at 0 ms "
            f"({fast.cpu_ms:.3f})")


def smtp_latency_runs(latency: float, n: int, keep: bool) -> None:
    """comms, the naive loop and mailmerge over SMTP at 0 and with the server taking
    ``latency`` s to accept each message (the baselines send one at a time: at most 300)."""
    check_tools()
    with work_folder(keep) as work:
        say(f"SMTP, N = {n:,}, {os.cpu_count()} CPUs; work folder {work}")
        rows = at_latencies("smtp", latency, n, work, [
            (slice(2, 3), False), (slice(3, 4), True), (slice(4, 5), True)], 300)
        for at in (0.0, latency):
            comms, naive, mailmerge = (next(r for a, r in rows if a == at and r.tool == tool)
                                       for tool in ("comms", "naive", "mailmerge"))
            say(f"at {at * 1000:g} ms: comms/naive msgs/s {_ratio(comms.send_rate, naive.send_rate)}"
                f", comms/mailmerge msgs/s {_ratio(comms.send_rate, mailmerge.send_rate)}, "
                f"CPU per message {_ratio(comms.cpu_ms, mailmerge.cpu_ms)} of mailmerge's")
            for run in (comms, naive, mailmerge):
                if run.problem:
                    say(f"  {run.tool}: {run.problem}")


if __name__ == "__main__":
    main()
