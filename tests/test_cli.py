"""The command line: exit codes 0/1/2, one line per problem, no tracebacks, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from comms.cli import cli


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_validate_example_is_clean(project_dir: Path) -> None:
    result = run("validate", "--project", str(project_dir))
    assert result.exit_code == 0, result.output
    assert "ok: 6 campaigns, 1 schedules, 165 stakeholders" in result.output


def test_validate_lists_every_problem_and_exits_2(project_dir: Path) -> None:
    awareness = project_dir / "campaigns" / "nmdi-awareness.yaml"
    text = awareness.read_text(encoding="utf-8")
    awareness.write_text(text.replace("after: {step: launch, days: 7}",
                                      "after: {step: lanch, days: 7}")
                         .replace("schedule: uk-working-hours", "schedul: uk-working-hours"),
                         encoding="utf-8")
    body = project_dir / "templates" / "mentors" / "call.txt.j2"
    body.write_text(body.read_text(encoding="utf-8") + "{{ stakeholder.nickname }}\n", "utf-8")
    body_lines = body.read_text(encoding="utf-8").count("\n")
    result = run("validate", "--project", str(project_dir))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    schedul = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("schedule:"))
    assert f"campaigns/nmdi-awareness.yaml:{schedul}: schedul: unknown key (did you mean " \
           "schedule?)" in lines
    assert (f"templates/mentors/call.txt.j2:{body_lines}: stakeholder has no attribute "
            "'nickname' (stakeholder has: email, first_name, last_name, full_name, role, "
            "organisation, borough, job_title, tags, attributes) (rendering for ") \
        in "\n".join(lines)
    assert any("(and 74 more recipients); step 'call' of campaigns/mentor-recruitment.yaml"
               in line for line in lines)
    assert lines[-1] == "2 problem(s) found"


def test_audience_matching_nobody_is_a_warning(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "pct-leads-briefing.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("pct_lead", "ptc_lead"), "utf-8")
    result = run("validate", "--project", str(project_dir))
    assert result.exit_code == 0
    assert "campaigns/pct-leads-briefing.yaml:" in result.output
    assert "warning: audience: audience matches nobody in stakeholders/" in result.output


def test_not_a_project(tmp_path: Path) -> None:
    result = run("validate", "--project", str(tmp_path))
    assert result.exit_code == 2
    assert "not a comms project: no campaigns/ folder here (use --project DIR)" in result.output


def test_schema_prints_json_schema() -> None:
    campaign = json.loads(run("schema").output)
    schedule = json.loads(run("schema", "schedule").output)
    assert campaign["title"] == "comms campaign" and "steps" in campaign["properties"]
    assert schedule["title"] == "comms schedule" and "window" in schedule["properties"]


def test_send_status_and_idempotence(project_dir: Path) -> None:
    result = run("send", "pct-leads-briefing", "--step", "briefing", "--project", str(project_dir))
    assert result.exit_code == 0, result.output
    assert "pct-leads-briefing/briefing: 6 sent, 0 already sent" in result.output
    again = run("send", "pct-leads-briefing", "--step", "briefing", "--project", str(project_dir))
    assert "0 sent, 6 already sent" in again.output
    status = json.loads(run("status", "--format", "json", "--project", str(project_dir)).output)
    row = next(r for r in status["steps"] if r["step"] == "briefing")
    assert (row["sent"], row["pending"], row["uncertain"]) == (6, 0, 0)
    assert row["due"] == "2026-11-30T10:00:00+00:00"
    assert status["uncertain"] == []
    assert len(list((project_dir / "outbox").glob("*.eml"))) == 6


def test_send_without_step_sends_only_due_steps(project_dir: Path) -> None:
    result = run("send", "workshops", "--project", str(project_dir))
    assert result.exit_code == 0
    assert "workshops/invite: not due until 2026-12-07T09:00:00+00:00 (use --step invite to send " \
           "now)" in result.output


def test_unknown_campaign_and_step_exit_2(project_dir: Path) -> None:
    result = run("send", "nope", "--project", str(project_dir))
    assert result.exit_code == 2
    assert result.output.strip() == ("error: unknown campaign 'nope' (campaigns are: "
                                     "mentor-recruitment, mentoring, nmdi-awareness, "
                                     "pct-leads-briefing, steering-pack, workshops)")
    result = run("send", "workshops", "--step", "invit", "--project", str(project_dir))
    assert result.exit_code == 2 and "unknown step 'invit' in workshops" in result.output


def test_transport_down_is_exit_1_and_names_the_failure(project_dir: Path) -> None:
    env = {"COMMS_ALLOW_INSECURE_LINKS": "true",
           "COMMS_SECRET_KEY": "a-test-signing-key-of-enough-length-0123456789",
           "COMMS_TRANSPORT": "smtp", "COMMS_SMTP_HOST": "127.0.0.1", "COMMS_SMTP_PORT": "1",
           "COMMS_MAX_ATTEMPTS": "1", "COMMS_SMTP_PASSWORD": "s3cret-pass"}
    result = run("send", "pct-leads-briefing", "--step", "briefing", "--project",
                 str(project_dir), env=env)
    assert result.exit_code == 1
    assert "6 send(s) failed; see `comms status`" in result.output
    assert "s3cret-pass" not in result.output


def test_secrets_are_never_printed(project_dir: Path) -> None:
    (project_dir / "comms.toml").write_text('sendgrid_api_key = "SG.toml-secret"\n', "utf-8")
    env = {"COMMS_SECRET_KEY": "signing-secret-value", "COMMS_SMTP_PASSWORD": "smtp-secret"}
    outputs = [run(*args, "--project", str(project_dir), env=env).output for args in (
        ("validate",), ("plan",), ("status",), ("send", "pct-leads-briefing", "--step",
                                                "briefing"))]
    from comms.settings import load_settings

    settings = load_settings(project_dir)
    assert settings.sendgrid_api_key is not None
    assert settings.sendgrid_api_key.get_secret_value() == "SG.toml-secret"
    outputs.append(repr(settings))
    for text in outputs:
        for secret in ("SG.toml-secret", "signing-secret-value", "smtp-secret"):
            assert secret not in text


def test_bad_setting_is_exit_2(project_dir: Path) -> None:
    result = run("status", "--project", str(project_dir), env={"COMMS_CONCURRENCY": "many"})
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "COMMS_CONCURRENCY" in result.output


def test_plan_json(project_dir: Path) -> None:
    rows = json.loads(run("plan", "nmdi-awareness", "--format", "json", "--project",
                          str(project_dir)).output)
    assert [(r["step"], r["due"], r["recipients"]) for r in rows] == [
        ("launch", "2026-12-01T09:00:00+00:00", 80), ("follow-up", None, 80)]
    assert {"campaign", "step", "occurrence", "due", "recipients"} <= set(rows[0])


def test_preview_prints_subject_text_and_html_path(project_dir: Path) -> None:
    result = run("preview", "nmdi-awareness", "launch", "--to",
                 "Tariq.Nowak@bexley-ct.nhs.example", "--project", str(project_dir))
    assert result.exit_code == 0, result.output
    assert "Subject: Tariq, develop as a leader with the NMDI" in result.output
    html_path = Path(next(line for line in result.output.splitlines()
                          if line.startswith("HTML: "))[6:])
    assert html_path.is_file() and "Tariq" in html_path.read_text(encoding="utf-8")
    missing = run("preview", "nmdi-awareness", "launch", "--to", "nobody@x.example",
                  "--project", str(project_dir))
    assert missing.exit_code == 2 and "no stakeholder nobody@x.example" in missing.output


def test_contacts_import_and_list(project_dir: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.csv"
    extra.write_text("email;first_name;last_name;role;borough\n"
                     "new.person@agency.example;New;Person;steering;Lambeth\n", "utf-8")
    result = run("contacts", "import", str(extra), "--project", str(project_dir))
    assert result.exit_code == 0 and "imported 1" in result.output
    listed = json.loads(run("contacts", "list", "--role", "steering", "--format", "json",
                            "--project", str(project_dir)).output)
    assert "new.person@agency.example" in {r["email"] for r in listed}
    bad = tmp_path / "bad.csv"
    bad.write_text("email,first_name,last_name,role\nnope,A,B,manager\n", "utf-8")
    result = run("contacts", "import", str(bad), "--project", str(project_dir))
    assert result.exit_code == 2 and f"{bad}:2: invalid email address 'nope'" in result.output


def test_contacts_list_csv_is_safe_for_excel(project_dir: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.csv"
    evil.write_text("email,first_name,last_name,role\nx@y.example,=HYPERLINK(\"a\"),B,manager\n",
                    "utf-8")
    run("contacts", "import", str(evil), "--project", str(project_dir))
    out = run("contacts", "list", "--format", "csv", "--project", str(project_dir)).output
    assert "'=HYPERLINK" in out


def test_validate_warns_when_an_organiser_is_invited(project_dir: Path) -> None:
    csv = project_dir / "stakeholders" / "sel-directory.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + "events@sel-learning.example,Events,Team,"
                   "manager,SEL Learning Alliance,,Events Officer,primary-care\n", "utf-8")
    result = run("validate", "--project", str(project_dir))
    assert result.exit_code == 0
    text = (project_dir / "campaigns" / "workshops.yaml").read_text(encoding="utf-8")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.strip() == "- id: invite")
    assert (f"campaigns/workshops.yaml:{line}: warning: steps[0]: organiser "
            "events@sel-learning.example of event 'ws1' is in the audience: they will not be "
            "sent their own invitation") in result.output


def test_validate_refuses_bad_cron_and_times_lost_to_the_clock_change(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    text = path.read_text(encoding="utf-8").replace("send_at: 2026-12-01 09:00",
                                                    "send_at: 2027-03-28 01:30")
    text += ("  - id: monthly\n    template: awareness/launch\n    subject: Update\n"
             "    cron: \"0 9 1 * funday\"\n")
    path.write_text(text, encoding="utf-8")
    result = run("validate", "--project", str(project_dir))
    assert result.exit_code == 2
    lines = text.splitlines()
    send_at = next(n for n, row in enumerate(lines, 1) if "send_at: 2027-03-28" in row)
    assert (f"campaigns/nmdi-awareness.yaml:{send_at}: steps[0].send_at: 2027-03-28 01:30 does "
            "not exist in Europe/London (the clocks go forward then)") in result.output
    assert (f"campaigns/nmdi-awareness.yaml:{len(lines)}: steps[2].cron: weekday 'funday' is not "
            "a number or a name") in result.output


def test_suppress_add_list_remove(project_dir: Path) -> None:
    project = ["--project", str(project_dir)]
    assert run("suppress", "add", "A@X.example", "b@x.example", *project).exit_code == 0
    listed = json.loads(run("suppress", "list", "--format", "json", *project).output)
    assert [(r["email"], r["reason"]) for r in listed] == [("a@x.example", "manual"),
                                                          ("b@x.example", "manual")]
    assert run("suppress", "remove", "a@x.example", *project).exit_code == 0
    again = run("suppress", "remove", "a@x.example", *project)
    assert again.exit_code == 2 and "is not on the suppression list" in again.output
    bad = run("suppress", "add", "not-an-address", *project)
    assert bad.exit_code == 2 and "invalid email address 'not-an-address'" in bad.output


def test_preview_of_an_invitation_writes_its_calendar(project_dir: Path) -> None:
    result = run("preview", "workshops", "invite", "--to", "tariq.nowak@bexley-ct.nhs.example",
                 "--project", str(project_dir))
    assert result.exit_code == 0, result.output
    path = Path(next(line for line in result.output.splitlines()
                     if line.startswith("Calendar: "))[10:])
    ics = path.read_text(encoding="utf-8")
    assert "METHOD:REQUEST" in ics and "UID:workshops.ws1.0e0e0e0e0e0e0e0e@sel-learning.example" in ics
    assert "mailto:tariq.nowak@bexley-ct.nhs.example" in ics.replace("\r\n ", "")
