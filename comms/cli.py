"""The ``comms`` command: thin shells over the library. Exit 0 ok, 1 runtime failure, 2 bad input."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click

from . import __version__, output
from .clock import human
from .errors import CommsError, ConfigError, ConfigErrors, NotFound, Refused, suggestion
from .stopping import ForcedStop

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """Printed as is (one problem per line), with the exit code of its kind."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigErrors as exc:
            raise Failure("\n".join(e.location_message() for e in exc.errors), 2) from None
        except ConfigError as exc:
            raise Failure(exc.location_message(), 2) from None
        except (NotFound, Refused) as exc:
            raise Failure(f"error: {exc}", 2) from None
        except CommsError as exc:
            raise Failure(f"error: {exc}", 1) from None
    return wrapper  # type: ignore[return-value]


def _completion_project(ctx: click.Context) -> Project | None:
    """The project shell completion reads (quietly: a broken project completes nothing)."""
    from .project import load_project

    root = ctx.params.get("project_dir") or os.environ.get("COMMS_PROJECT_DIR") or "."
    try:
        return load_project(Path(root))
    except CommsError:
        return None


def _complete_campaigns(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[str]:
    project = _completion_project(ctx)
    return sorted(c for c in (project.campaigns if project else ()) if c.startswith(incomplete))


def _complete_steps(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    project = _completion_project(ctx)
    if project is None:
        return []
    named = project.campaigns.get(ctx.params.get("campaign") or "")
    chosen = [named] if named else list(project.campaigns.values())  # not parsed yet: any
    return sorted({s.id for c in chosen for s in c.steps if s.id.startswith(incomplete)})


def _complete_events(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    project = _completion_project(ctx)
    found = [e.id for c in (project.campaigns.values() if project else ()) for e in c.events]
    return sorted({e for e in found if e.startswith(incomplete)})


def project_option(fn: F) -> F:
    return click.option("--project", "project_dir", type=click.Path(file_okay=False, path_type=Path),
                        default=None, help="The project folder (default: COMMS_PROJECT_DIR or .)")(fn)


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(choices), default=choices[0],
                        show_default=True)


def make_app(project_dir: Path | None) -> App:
    from .app import App  # imported when a command runs: `comms --help` stays quick

    return App.for_project(project_dir)


def loaded(app: App) -> App:
    """The app with its project loaded and free of errors (else exit 2 listing them)."""
    app.project.raise_errors()
    return app


def ready(app: App) -> App:
    """The app loaded, and safe to send real mail with (else exit 2 naming each setting)."""
    from .safety import problems

    found = problems(app.settings)
    if found:
        raise ConfigErrors(found)
    return loaded(app)


class _Group(click.Group):
    """Commands listed with their whole first sentence (wrapped, never cut with "...")."""

    group_class = type  # subgroups list their commands the same way

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                text = (command.short_help or inspect.cleandoc(command.help or "")).split("\n\n")[0]
                rows.append((name, " ".join(text.split()).split(". ")[0].rstrip(".")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="comms")
def cli() -> None:
    """Stakeholder communications from files: campaigns, invitations, tracking, reports."""


@cli.command()
@format_option("text", "json")
@project_option
@handle_errors
def validate(fmt: str, project_dir: Path | None) -> None:
    """Check every file and render every message of every step for every recipient."""
    from .preflight import check
    from .safety import problems as unsafe

    app = make_app(project_dir)
    problems = [*unsafe(app.settings),
                *check(app.project, timezone=app.settings.timezone, now=app.clock.now())]
    if fmt == "json":  # for scripts: every problem, and the exit code as for the text
        found = [{"path": p.path, "line": p.line, "key": p.key, "message": p.message,
                  "warning": p.warning} for p in problems]
        click.echo(json.dumps({"ok": not any(not p.warning for p in problems),
                               "problems": found}, indent=2, ensure_ascii=False))
        if any(not p.warning for p in problems):
            sys.exit(2)
        return
    for problem in problems:
        click.echo(problem.location_message(), err=True)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise Failure(f"{len(errors)} problem(s) found", 2)
    project = app.project
    click.echo(f"ok: {len(project.campaigns)} campaigns, {len(project.schedules)} schedules, "
               f"{len(project.directory.people)} stakeholders")


@cli.command()
@click.argument("kind", type=click.Choice(["campaign", "schedule"]), default="campaign")
@project_option
def schema(kind: str, project_dir: Path | None) -> None:
    """Print the JSON Schema of campaign (or schedule) files, for editor autocompletion."""
    from . import campaign, schedule

    module = campaign if kind == "campaign" else schedule
    click.echo(json.dumps(module.json_schema(), indent=2))


@cli.command()
@click.argument("campaign", required=False, shell_complete=_complete_campaigns)
@format_option("table", "csv", "json")
@project_option
@handle_errors
def plan(campaign: str | None, fmt: str, project_dir: Path | None) -> None:
    """The timeline: each step occurrence in time order, when it is due, its state and to how
    many people.

    \b
    Examples:
      comms plan
      comms plan workshops --format json
      COMMS_NOW="2027-01-14 09:00" comms plan workshops
    """
    from .plan import zone_of
    from .status import timeline

    app = loaded(make_app(project_dir))
    app.sync_directory()
    rows = timeline(app, campaign_id=campaign)
    if fmt == "json":
        click.echo(json.dumps([o.as_json() for o in rows], indent=2))
        return
    if fmt == "csv":
        click.echo(output.render([o.as_json() for o in rows], ["campaign", "step", "occurrence",
                                                               "due", "state", "recipients",
                                                               "note"], "csv"))
        return
    zones = {c.id: zone_of(app.project, c, app.settings.timezone)
             for c in app.project.campaigns.values()}
    columns = ["due", "step", "state", "recipients", "note"]
    click.echo(output.render([o.as_row(zones[o.campaign]) for o in rows], columns, fmt))


@cli.command()
@click.argument("campaign", shell_complete=_complete_campaigns)
@click.argument("step", shell_complete=_complete_steps)
@click.option("--to", "email", required=True, help="The stakeholder's address")
@format_option("text", "json")
@project_option
@handle_errors
def preview(campaign: str, step: str, email: str, fmt: str, project_dir: Path | None) -> None:
    """Render one step for one stakeholder: subject, text, and the path of the HTML."""
    from .preview import preview as render_preview

    app = loaded(make_app(project_dir))
    shown = render_preview(app, campaign, step, email)
    message = shown.message
    if fmt == "json":
        click.echo(json.dumps({
            "from": {"email": message.sender.email, "name": message.sender.name},
            "to": [{"email": a.email, "name": a.name} for a in message.recipients],
            "subject": message.subject, "html_path": str(shown.html_path),
            "calendar_path": str(shown.ics_path) if shown.ics_path else None,
            "attachments": [a.filename for a in message.attachments], "text": message.text},
            indent=2, ensure_ascii=False))
        return
    click.echo(f"From: {shown.message.sender.name} <{shown.message.sender.email}>")
    click.echo(f"To: {shown.message.to.name} <{shown.message.to.email}>")
    click.echo(f"Subject: {shown.message.subject}")
    click.echo(f"HTML: {shown.html_path}")
    if shown.ics_path:
        click.echo(f"Calendar: {shown.ics_path}")
    click.echo("")
    click.echo(shown.message.text)


@cli.command()
@click.argument("campaign", shell_complete=_complete_campaigns)
@click.option("--step", "steps", multiple=True, shell_complete=_complete_steps,
              help="Send this step now, whatever its timing "
              "and the schedule's window (repeatable). Without it: what `comms run` would send "
              "now.")
@click.option("--dry-run", is_flag=True, help="Render and count; send nothing, write nothing.")
@click.option("--resend-uncertain", is_flag=True, help="Also send again what a stopped process "
              "left uncertain (those recipients may get the message twice).")
@click.option("--retry-failed", is_flag=True, help="Send again what failed (of the --step "
              "steps, else of every step), once the cause is fixed.")
@click.option("--test-to", metavar="EMAIL", help="Send one real copy of the --step to EMAIL, "
              "subject marked [TEST]; nothing is recorded, the real send still reaches everyone.")
@click.option("--as", "as_email", metavar="STAKEHOLDER_EMAIL", help="With --test-to: render it "
              "as this stakeholder gets it (default: the first of the step's audience).")
@format_option("text", "json")
@project_option
@handle_errors
def send(campaign: str, steps: tuple[str, ...], dry_run: bool, resend_uncertain: bool,
         retry_failed: bool, test_to: str | None, as_email: str | None, fmt: str,
         project_dir: Path | None) -> None:
    """Send what is due now (or the given steps), to the audience. A second run sends nothing
    new.

    \b
    Examples:
      comms send workshops --dry-run
      comms send workshops --step invite
      comms send workshops --step invite --test-to me@sel-learning.example
    """
    from .plan import steps_due
    from .preflight import check_campaign
    from .progress import progress_bar
    from .service import Service
    from .stopping import Stop

    app = ready(make_app(project_dir))
    chosen = app.project.campaign(campaign)
    unknown = [s for s in steps if chosen.step(s) is None]
    if unknown:
        known = ", ".join(s.id for s in chosen.steps)
        raise NotFound(f"unknown step '{unknown[0]}' in {campaign} (steps are: {known})"
                       + suggestion(unknown[0], [s.id for s in chosen.steps]))
    if as_email is not None and test_to is None:
        raise NotFound("--as goes with --test-to")
    if test_to is not None:
        from .testsend import send_test

        if len(steps) != 1 or dry_run or resend_uncertain or retry_failed:
            raise NotFound("--test-to sends one step: give exactly one --step, and no "
                           "--dry-run, --resend-uncertain or --retry-failed")
        step = chosen.step(steps[0])
        assert step is not None
        try:
            message = send_test(app, chosen, step, test_to, as_email)
        finally:
            app.close()
        click.echo(f"{campaign}/{step.id}: test sent to {message.to.email} as "
                   f"{message.to.name or 'the stakeholder'} (nothing recorded)")
        return
    if not dry_run:
        from .approval import problems as unapproved

        refusals = unapproved(app, chosen)
        if refusals:
            raise Failure("\n".join(f"error: {line}" for line in refusals), 2)
    # What only rendering or the clock can find is refused before anything is written.
    found = [p for p in check_campaign(app.project, chosen, timezone=app.settings.timezone,
                                       now=app.clock.now()) if not p.warning]
    if found:
        raise ConfigErrors(found)
    app.sync_directory()
    service = Service(app)
    stop = Stop()
    stop.on_stop(service.stop)
    stop.on_stop(lambda: click.echo("stopping: finishing and recording what is under way "
                                    "(a second signal stops at once)", err=True))
    from .plan import schedule_of
    from .progress import Pace

    policy = schedule_of(app.project, chosen)
    pace = (Pace(policy.max_per_minute, f"schedule {policy.id}", app.clock.now,
                 ZoneInfo(app.settings.timezone))
            if policy is not None and policy.max_per_minute else None)
    try:
        with stop.installed(), progress_bar(pace, lambda line: click.echo(line, err=True)) as bar:
            if retry_failed and not dry_run:
                chosen_steps = [step for s in steps if (step := chosen.step(s)) is not None]
                report = service.retry_failed(chosen, chosen_steps or list(chosen.steps),
                                              progress=bar)
            elif steps:
                click.echo(f"{campaign}: sending {', '.join(steps)} now (--step overrides the "
                           "timing and the schedule's window)", err=True)
                todo = [step for s in steps if (step := chosen.step(s)) is not None]
                report = service.send_now(chosen, todo, dry_run=dry_run,
                                          resend_uncertain=resend_uncertain, progress=bar)
            else:
                report = service.cycle(chosen, dry_run=dry_run, resend_uncertain=resend_uncertain,
                                       progress=bar)
    finally:
        app.close()
    if fmt == "json":  # for scripts: the summaries, and the exit code as for the text
        click.echo(json.dumps({
            "campaign": campaign, "paused": bool(report.paused), "dry_run": dry_run,
            "summaries": [dataclasses.asdict(s) for s in report.summaries],
            "waiting": report.waiting, "missed": report.missed,
            "stopped_by": signal.Signals(stop.signum).name if stop.signum else None},
            indent=2, ensure_ascii=False))
        if stop.signum is not None:
            sys.exit(stop.exit_code)
        if any(s.failed for s in report.summaries):
            sys.exit(1)
        return
    if report.paused:
        click.echo(f"{campaign}: paused — `comms resume {campaign}` to continue")
        return
    for summary in report.summaries:
        click.echo(summary.line())
        for failure in summary.failures:
            click.echo(f"  failed: {failure}", err=True)
    for line in report.waiting:
        click.echo(line, err=True)
    for line in report.missed:
        click.echo(f"{line}{' (would be recorded as missed)' if dry_run else ''}", err=True)
    if not steps:
        _, later = steps_due(app.project, chosen, timezone=app.settings.timezone,
                             now=app.clock.now())
        for step, why in later:
            click.echo(f"{campaign}/{step.id}: {why}", err=True)
    if stop.signum is not None:
        raise Failure(f"stopped by {signal.Signals(stop.signum).name}: what was under way was "
                      "sent and recorded; the rest goes on the next run", stop.exit_code)
    failed = sum(s.failed for s in report.summaries)
    if failed:
        raise Failure(f"{failed} send(s) failed; see `comms status`", 1)


@cli.command()
@click.argument("campaign", shell_complete=_complete_campaigns)
@click.option("--by", "by", metavar="EMAIL", help="Who approves (not the last author of the "
              "campaign's files).")
@click.option("--revoke", is_flag=True, help="Withdraw the campaign's approval.")
@project_option
@handle_errors
def approve(campaign: str, by: str | None, revoke: bool, project_dir: Path | None) -> None:
    """Sign a campaign off as its files are now (with require_approval in comms.toml, send and
    run refuse a campaign without it, or changed since)."""
    from .approval import approve as record
    from .store import approvals

    app = loaded(make_app(project_dir))
    chosen = app.project.campaign(campaign)
    if revoke:
        with app.store.write() as conn:
            gone = approvals.revoke(conn, chosen.id)
        click.echo(f"{chosen.id}: approval withdrawn" if gone else f"{chosen.id}: not approved")
        return
    if by is None:
        raise NotFound("--by EMAIL: who approves")
    files = record(app, chosen, by)
    click.echo(f"{chosen.id}: approved by {by} ({len(files)} files: {', '.join(files)})")


STATUS_OPTIONAL = ("claimed", "skipped", "missed", "suppressed", "uncertain", "failed",
                   "pending")  # what a narrow terminal may leave out of `status`, first to last


@cli.command()
@click.argument("campaign", required=False, shell_complete=_complete_campaigns)
@format_option("table", "csv", "json")
@project_option
@handle_errors
def status(campaign: str | None, fmt: str, project_dir: Path | None) -> None:
    """Per step: due, sent, pending, failed, uncertain; and the uncertain sends by name."""
    from .status import status as get_status
    from .store.sends import STATES

    app = loaded(make_app(project_dir))
    result = get_status(app, campaign)
    if fmt == "json":
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    if fmt == "csv":
        click.echo(output.render(result.steps, ["campaign", "step", "state", "due", *STATES],
                                 "csv"))
        return
    zone = ZoneInfo(app.settings.timezone)
    click.echo(output.render(result.steps, ["campaign", "step", "state", "due", *STATES], "table",
                             zone=zone, optional=STATUS_OPTIONAL))
    for paused, since in result.paused.items():
        click.echo(f"\n{paused}: paused since {human(since, zone)} — "
                   f"`comms resume {paused}` to continue")
    for skipped in result.skipped_pairs:
        click.echo(f"\n{skipped['campaign']}/{skipped['step']}: pair skipped, one of the two "
                   f"suppressed: {skipped['pair']}")
    for signed in result.approvals:
        click.echo(f"\n{signed['campaign']}: approved by {signed['approver']} "
                   f"{human(signed['approved_at'], zone)}"
                   f"{'' if signed['current'] else ' — changed since: approve it again'}")
    click.echo(f"\nlast scheduler run: {result.last_run or 'never'}")
    if result.upcoming:
        click.echo("next due:")
        click.echo(output.render(result.upcoming, ["campaign", "step", "occurrence", "due",
                                                   "state"], "table", zone=zone))
    if result.missed:
        click.echo(f"\n{len(result.missed)} missed:")
        click.echo(output.render(result.missed, ["campaign", "step", "occurrence", "due_at",
                                                 "reason"], "table", zone=zone))
    if result.failed:
        click.echo(f"\n{len(result.failed)} failed (`comms send CAMPAIGN --retry-failed` once "
                   "the cause is fixed):")
        click.echo(output.render(result.failed, ["campaign", "step", "email", "error"], "table",
                                 zone=zone))
    if result.uncertain:
        click.echo(f"\n{len(result.uncertain)} uncertain (claimed by a process that stopped; "
                   "maybe sent, maybe not):")
        click.echo(output.render(result.uncertain, ["campaign", "step", "email", "claimed_at"],
                                 "table", zone=zone))


@cli.group()
def contacts() -> None:
    """The stakeholder directory in the store."""


@contacts.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@handle_errors
def contacts_import(path: Path, project_dir: Path | None) -> None:
    """Check a CSV/YAML directory file and add or update its people in the store."""
    from .audience import read_directory
    from .store.stakeholders import sync

    app = make_app(project_dir)
    directory = read_directory([path.resolve()])
    if directory.problems:
        raise ConfigErrors(directory.problems)
    result = sync(app.store, directory.people, now=app.clock.now())
    for person in result.forgotten:
        click.echo(f"{path}:{person.line}: warning: skipped: this address was erased on request",
                   err=True)
    click.echo(f"imported {result.upserted} from {path}; {result.deactivated} no longer listed")


@contacts.command("list")
@click.option("--role")
@click.option("--borough")
@format_option("table", "csv", "json")
@project_option
@handle_errors
def contacts_list(role: str | None, borough: str | None, fmt: str,
                  project_dir: Path | None) -> None:
    """The people in the store (the project's stakeholders/ is synced first)."""
    from .store.stakeholders import listing

    app = make_app(project_dir)
    if not app.project.errors:
        app.sync_directory()
    with app.store.read() as conn:
        rows = listing(conn, role=role, borough=borough)
    columns = ["email", "first_name", "last_name", "role", "organisation", "borough", "job_title",
               "tags"]
    click.echo(output.render(rows, columns, fmt, optional=("tags", "job_title", "organisation",
                                                           "first_name", "last_name")))


@contacts.command("export")
@click.argument("email")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON here instead of to standard output.")
@project_option
@handle_errors
def contacts_export(email: str, output: Path | None, project_dir: Path | None) -> None:
    """Everything comms holds about one person, as JSON (a subject access request)."""
    from .privacy import export_person

    app = make_app(project_dir)
    text = json.dumps(export_person(app.store, email), indent=2, ensure_ascii=False)
    if output:
        _write_file(output, text + "\n")
        click.echo(f"written to {output}")
    else:
        click.echo(text)


@contacts.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@project_option
@handle_errors
def contacts_forget(email: str, yes: bool, project_dir: Path | None) -> None:
    """Erase a person from every table and file; keep only a keyed hash to refuse them later."""
    from .privacy import forget_person

    if not yes:
        if not sys.stdin.isatty():
            raise Refused("contacts forget asks for confirmation: pass --yes to confirm without "
                          "a terminal")
        click.confirm(f"Erase everything comms holds about {email}? This cannot be undone",
                      abort=True)
    app = make_app(project_dir)
    result = forget_person(app.store, email, now=app.clock.now(),
                           outbox=app.settings.resolved_outbox_dir)
    click.echo(f"erased: {result.rows} person, {result.files} file(s); the address stays "
               "suppressed (as a keyed hash). Remove them from stakeholders/ too.")


@cli.group()
def suppress() -> None:
    """The suppression list: addresses never mailed again, in any campaign."""


@suppress.command("list")
@format_option("table", "csv", "json")
@project_option
@handle_errors
def suppress_list(fmt: str, project_dir: Path | None) -> None:
    """Every suppressed address, why and since when (erased people show no address)."""
    from dataclasses import asdict

    from .suppression import list_suppressions

    app = make_app(project_dir)
    with app.store.read() as conn:
        rows = [asdict(s) for s in list_suppressions(conn)]
    click.echo(output.render(rows, ["email", "reason", "source", "created_at"], fmt))


@suppress.command("add")
@click.argument("emails", nargs=-1, required=True)
@click.option("--reason", default="manual", show_default=True,
              type=click.Choice(["manual", "unsubscribed", "bounced", "spam"]))
@project_option
@handle_errors
def suppress_add(emails: tuple[str, ...], reason: str, project_dir: Path | None) -> None:
    """Never mail these addresses again."""
    from ._types import normalise_email
    from .suppression import AddressHasher
    from .suppression import suppress as add

    try:
        checked = [normalise_email(e) for e in emails]
    except ValueError as exc:
        raise Failure(f"error: {exc}", 2) from None
    app = make_app(project_dir)
    hasher = AddressHasher(app.store)
    with app.store.write() as conn:
        add(conn, hasher, checked, reason=reason, source="comms suppress add", now=app.clock.now())
    click.echo(f"suppressed {len(checked)} address(es)")


@suppress.command("remove")
@click.argument("email")
@project_option
@handle_errors
def suppress_remove(email: str, project_dir: Path | None) -> None:
    """Allow an address again (not one erased on request)."""
    from .suppression import AddressHasher, unsuppress

    app = make_app(project_dir)
    hasher = AddressHasher(app.store)
    with app.store.write() as conn:
        removed = unsuppress(conn, hasher, email)
    if not removed:
        raise Failure(f"error: {email} is not on the suppression list (or was erased on "
                      "request, which cannot be undone here)", 2)
    click.echo(f"{email} may be mailed again")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@project_option
@handle_errors
def serve(host: str, port: int, project_dir: Path | None) -> None:
    """The web app: RSVP pages, unsubscribe, inbound calendar replies."""
    from .stopping import Stop
    from .web import serve as run_server

    app = loaded(make_app(project_dir))
    app.sync_directory()
    with Stop().installed() as stop:
        run_server(app, host=host, port=port, stop=stop)


@cli.command("run")
@click.option("--no-web", is_flag=True, help="Leave the web app out (scheduler and dispatch only).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@project_option
@handle_errors
def run_command(no_web: bool, host: str, port: int, project_dir: Path | None) -> None:
    """The service: sends every step at its time, and serves the web app, until stopped."""
    from .scheduler import run_service
    from .stopping import Stop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = ready(make_app(project_dir))
    app.sync_directory()
    with Stop().installed() as stop:
        run_service(app, web=not no_web, host=host, port=port, stop=stop)
    app.close()


@cli.command()
@click.argument("campaign", shell_complete=_complete_campaigns)
@project_option
@handle_errors
def pause(campaign: str, project_dir: Path | None) -> None:
    """Send nothing of CAMPAIGN until it is resumed."""
    changed = _set_paused(project_dir, campaign, True)
    click.echo(f"{campaign}: paused" if changed else f"{campaign}: already paused")


@cli.command()
@click.argument("campaign", shell_complete=_complete_campaigns)
@project_option
@handle_errors
def resume(campaign: str, project_dir: Path | None) -> None:
    """Resume CAMPAIGN: what fell due meanwhile is sent once (within its catch-up window)."""
    changed = _set_paused(project_dir, campaign, False)
    click.echo(f"{campaign}: resumed" if changed else f"{campaign}: was not paused")


def _set_paused(project_dir: Path | None, campaign: str, paused: bool) -> bool:
    from .store.campaigns import set_paused

    app = loaded(make_app(project_dir))
    app.project.campaign(campaign)  # unknown campaigns: exit 2
    with app.store.write() as conn:
        return set_paused(conn, campaign, paused, app.clock.now())


if TYPE_CHECKING:
    from .app import App
    from .project import Project
    from .tracking.inbound import InboundResult


@cli.group()
def inbox() -> None:
    """Mail that comes back: calendar replies to invitations."""


@inbox.command("import")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@project_option
@handle_errors
def inbox_import(path: Path, project_dir: Path | None) -> None:
    """Read .eml files, a folder of them, or an mbox file; record the calendar replies."""
    from .tracking.mailbox import import_path

    app = loaded(make_app(project_dir))
    _inbox_summary(import_path(app.rsvps, path))


@inbox.command("poll")
@project_option
@handle_errors
def inbox_poll(project_dir: Path | None) -> None:
    """Fetch unread mail from the IMAP mailbox (COMMS_IMAP_*) and record calendar replies."""
    from .tracking.mailbox import poll_imap

    app = loaded(make_app(project_dir))
    _inbox_summary(poll_imap(app.rsvps, app.settings))


def _inbox_summary(result: InboundResult) -> None:
    click.echo(result.line())
    for word, lines in (("stale", result.stale), ("not invited", result.not_invited),
                        ("not understood", result.not_understood),
                        ("not matched", result.unmatched)):
        for line in lines:
            click.echo(f"  {word}: {line}", err=True)


@cli.group("events")
def events_group() -> None:
    """Who is coming: rosters and attendance."""


@events_group.command("roster")
@click.argument("event", shell_complete=_complete_events)
@format_option("table", "csv", "json")
@project_option
@handle_errors
def events_roster(event: str, fmt: str, project_dir: Path | None) -> None:
    """Each invitee with status, source and time of the answer (EVENT or CAMPAIGN/EVENT)."""
    from .events import find_event, roster

    app = loaded(make_app(project_dir))
    campaign, found = find_event(app.project.campaigns, event)
    rows = roster(app.store, campaign, found)
    columns = ["email", "name", "organisation", "borough", "status", "source", "answered_at",
               "attended"]
    click.echo(output.render(rows, columns, fmt, optional=("organisation", "source", "attended",
                                                           "borough", "answered_at", "name")))


@events_group.command("attendance")
@click.argument("event", shell_complete=_complete_events)
@click.argument("sheet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@project_option
@handle_errors
def events_attendance(event: str, sheet: Path, project_dir: Path | None) -> None:
    """Import a sign-in sheet (CSV with an email column): who attended EVENT."""
    from .events import find_event, import_attendance

    app = loaded(make_app(project_dir))
    campaign, found = find_event(app.project.campaigns, event)
    app.sync_directory()
    result = import_attendance(app.store, campaign, found, sheet, now=app.clock.now())
    click.echo(f"{result.recorded} attended {campaign.id}/{found.id}")
    for email in result.unknown:
        click.echo(f"{sheet}: warning: {email} is not in the directory", err=True)


@events_group.command("feedback")
@click.argument("event", shell_complete=_complete_events)
@format_option("table", "csv", "json")
@click.option("--by", type=click.Choice(["borough", "organisation"]), default="borough",
              show_default=True, help="group the ratings by")
@project_option
@handle_errors
def events_feedback(event: str, fmt: str, by: str, project_dir: Path | None) -> None:
    """Ratings of EVENT (or CAMPAIGN/EVENT): count, response rate, mean, distribution, by group,
    and the comments."""
    from .events import feedback_summary, find_event

    app = loaded(make_app(project_dir))
    campaign, found = find_event(app.project.campaigns, event)
    result = feedback_summary(app.store, campaign, found, by=by)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    rate = result["response_rate"]
    head = [{"figure": "asked", "value": result["asked"]},
            {"figure": "answered", "value": result["count"]},
            {"figure": "response rate", "value": "—" if rate is None else f"{rate:.0%}"},
            {"figure": "mean rating", "value": "—" if result["mean"] is None
             else f"{result['mean']:.2f}"},
            *({"figure": f"rated {n}", "value": k} for n, k in result["distribution"].items())]
    groups = [{by: g["group"], "answered": g["count"], "mean": f"{g['mean']:.2f}"}
              for g in result["by_group"]]
    if fmt == "csv":
        click.echo(output.render([*({"section": "figure", "name": r["figure"], "value": r["value"]}
                                    for r in head),
                                  *({"section": by, "name": g[by], "value": g["mean"]}
                                    for g in groups),
                                  *({"section": "comment", "name": str(c["rating"]),
                                     "value": c["comment"]} for c in result["comments"])],
                                 ["section", "name", "value"], "csv"))
        return
    click.echo(output.render(head, ["figure", "value"], "table",
                             title=f"{campaign.id}/{found.id}: feedback"))
    if groups:
        click.echo(output.render(groups, [by, "answered", "mean"], "table"))
    for comment in result["comments"]:
        click.echo(f"  [{comment['rating']}] {comment['comment']}")


@cli.group("pairs")
def pairs_group() -> None:
    """Mentoring pairs (pairs/ROUND.csv): who is paired, and how each pair is doing."""


@pairs_group.command("status")
@click.argument("round_id", metavar="[ROUND]", required=False)
@format_option("table", "csv", "json")
@project_option
@handle_errors
def pairs_status(round_id: str | None, fmt: str, project_dir: Path | None) -> None:
    """Each pair and its state: not introduced, introduced, met or not yet."""
    from .pairs import introductions
    from .store import pairs

    app = loaded(make_app(project_dir))
    rounds = app.project.rounds.pairs
    if round_id is not None and round_id not in rounds:
        raise NotFound(f"unknown round of pairs '{round_id}' (rounds are: "
                       f"{', '.join(sorted(rounds)) or 'none'})" + suggestion(round_id, rounds))
    app.sync_directory()
    with app.store.read() as conn:
        rows = pairs.listing(conn, round_id, introductions(app.project.campaigns.values()))
    click.echo(output.render(rows, ["round", "mentor", "mentee", "borough", "state",
                                    "answered_at", "note"], fmt,
                             zone=ZoneInfo(app.settings.timezone),
                             optional=("note", "answered_at", "borough", "round")))


@cli.group("report", invoke_without_command=True)
@click.option("--campaign", help="Only this campaign (default: every campaign).")
@click.option("--by", type=click.Choice(["borough", "organisation", "role"]), default="borough",
              show_default=True, help="The groups of the equity view.")
@format_option("table", "csv", "json", "html")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of the terminal.")
@project_option
@click.pass_context
@handle_errors
def report_group(ctx: click.Context, campaign: str | None, by: str, fmt: str, out: Path | None,
                 project_dir: Path | None) -> None:
    """The programme at a glance, then engagement by campaign, step, group and event: reach,
    responses, equity, goals.

    \b
    Examples:
      comms report
      comms report --format html -o report.html
      comms report --campaign workshops --by organisation --format csv -o workshops.csv
      comms report chase workshops --step invite -o chase.csv
    """
    if ctx.invoked_subcommand is not None:
        return
    from .report import report

    app = loaded(make_app(project_dir))
    app.sync_directory()
    _write_report(report(app, campaign=campaign, by=by).render(fmt), out, excel=fmt == "csv")


@report_group.command("chase")
@click.argument("campaign", shell_complete=_complete_campaigns)
@click.option("--step", shell_complete=_complete_steps,
              help="Only people who have not responded to this step.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of the terminal.")
@format_option("csv", "table", "json")
@project_option
@handle_errors
def report_chase(campaign: str, step: str | None, out: Path | None, fmt: str,
                 project_dir: Path | None) -> None:
    """People sent CAMPAIGN (or its STEP) with no response yet, as CSV for the team to phone."""
    from .report import CHASE_COLUMNS, chase, csv_text

    app = loaded(make_app(project_dir))
    rows = chase(app, campaign, step)
    text = (csv_text(rows, CHASE_COLUMNS) if fmt == "csv" else
            output.render(rows, CHASE_COLUMNS, fmt, optional=("note", "job_title", "role",
                                                               "organisation", "phone")))
    _write_report(text, out, excel=fmt == "csv")
    if out is not None:
        click.echo(f"{len(rows)} people to chase written to {out}", err=True)


def _write_report(text: str, out: Path | None, *, excel: bool) -> None:
    """To the terminal, or to a file (CSV with a byte-order mark, so Excel reads UTF-8)."""
    if out is None:
        click.echo(text)
        return
    _write_file(out, text + "\n", encoding="utf-8-sig" if excel else "utf-8")


def _write_file(out: Path, text: str, *, encoding: str = "utf-8") -> None:
    """A file of mode 600, written whole (or an error naming it, exit 1)."""
    from ._files import write_private

    try:
        write_private(out, text, encoding=encoding)
    except OSError as exc:
        raise Failure(f"error: cannot write {out}: {exc.strerror}", 1) from None


from .scaffold import init as _init  # noqa: E402

cli.add_command(_init)


class _Terminated(BaseException):
    """SIGTERM outside a command's own handling of it."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def main() -> None:
    # Every file comms writes (the store, the outbox, previews, exports, reports) is its
    # owner's alone: mode 600, folders 700.
    os.umask(0o077)
    # Commands report what happened themselves; log records reach a person only under
    # `comms run` and `comms serve`, which configure logging.
    logging.getLogger("comms").addHandler(logging.NullHandler())
    # Outside the moments a command handles signals itself (`Stop.installed`), SIGTERM stops
    # as SIGINT does: nothing is being sent then, so an exit with 143 is clean.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        cli(standalone_mode=True)
    except _Terminated:
        click.echo("terminated", err=True)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except ForcedStop as exc:
        click.echo(f"{exc}: what was still being sent is listed as uncertain "
                   "(`comms status`)", err=True)
        sys.exit(128 + exc.signum)
    finally:
        # Done and recorded: a signal while the interpreter shuts down (which puts the default
        # handlers back) changes nothing, so it must not kill the process with the signal.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
