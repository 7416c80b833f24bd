"""`comms init DIR`: a working programme in one command, that validates and sends at once; a
folder that holds anything is refused unless --force."""

from __future__ import annotations

import email
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import cast

import pytest
import yaml
from click.testing import CliRunner, Result

from comms.cli import cli
from comms.scaffold import FILES
from comms.settings import Settings, load_settings
from tests.conftest import ROOT, need

PEOPLE = {"alex.smith@gp-a.nhs.example", "sam.patel@gp-b.nhs.example",
          "jordan.okafor@gp-c.nhs.example"}
NEXT = ["comms validate --project prog", "comms send awareness --step launch --project prog",
        "comms status --project prog"]
REFUSED = "prog: is not empty: pass --force to write the starter programme into it (files of " \
          "the same names are replaced)"
WRITTEN = sorted([".github/workflows/validate.yml", ".gitignore", ".pre-commit-config.yaml",
                  "campaigns/awareness.yaml", "comms.toml", "schedules/uk-working-hours.yaml",
                  "stakeholders/directory.csv", "templates/awareness/follow-up.html.j2",
                  "templates/awareness/follow-up.txt.j2", "templates/awareness/launch.html.j2",
                  "templates/awareness/launch.txt.j2", "templates/layouts/email.html.j2"])
KEY_LINE = re.compile(r"^# ([a-z][a-z0-9_]*) = (.+)$")


@pytest.fixture(autouse=True)
def no_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No COMMS_* variable from the machine reaches these tests; they run in a scratch folder."""
    for name in [n for n in os.environ if n.upper().startswith("COMMS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def messages(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(outbox.glob("*.eml")):
        with path.open("rb") as file:
            found.append(cast(EmailMessage, email.message_from_binary_file(
                file, policy=policy.default)))
    return found


def next_commands(output: str) -> list[str]:
    lines = output.splitlines()
    return [line.strip() for line in lines[lines.index("next:") + 1:]]


def key_lines(text: str) -> dict[str, tuple[int, str]]:
    """Each commented setting of comms.toml: key → (its line number, its value)."""
    return {m[1]: (n, m[2]) for n, line in enumerate(text.splitlines(), 1)
            if (m := KEY_LINE.match(line))}


def test_init_writes_the_programme_and_prints_the_next_three_commands(tmp_path: Path) -> None:
    result = run("init", "prog")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines()[0] == (
        "created a programme in prog: 12 files (3 example people, campaign 'awareness', schedule "
        "'uk-working-hours', comms.toml, .gitignore, CI and pre-commit checks)")
    assert next_commands(result.stdout) == NEXT
    assert [p for p in tree(tmp_path / "prog") if (tmp_path / "prog" / p).is_file()] == WRITTEN


def test_in_the_current_folder_the_commands_need_no_project(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    result = run("init", ".")
    assert result.exit_code == 0, result.output
    assert next_commands(result.stdout) == ["comms validate", "comms send awareness --step launch",
                                            "comms status"]


def test_a_folder_with_a_space_is_quoted_in_the_commands() -> None:
    result = run("init", "my programme")
    assert next_commands(result.stdout)[0] == "comms validate --project 'my programme'"


# Whenever it is run: a bank holiday night, a Saturday, a weekday inside the window.
@pytest.mark.parametrize("moment", ["2026-12-25 23:30", "2027-01-02 03:00", "2027-01-12 10:00"])
def test_the_printed_commands_validate_and_send_at_once(tmp_path: Path, moment: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMS_NOW", moment)
    printed = next_commands(run("init", "prog").stdout)
    results = [run(*shlex.split(command)[1:]) for command in printed]
    assert [r.exit_code for r in results] == [0, 0, 0], [r.output for r in results]
    validate, send, _ = results
    assert validate.stdout == "ok: 1 campaigns, 1 schedules, 3 stakeholders\n"
    assert validate.stderr == ""
    assert "awareness/launch: 3 sent, 0 already sent, 0 suppressed, 0 failed, 0 uncertain" \
        in send.stdout
    sent = messages(tmp_path / "prog" / "outbox")
    assert len(sent) == 3
    assert {a for m in sent for _, a in getaddresses([str(m["To"])])} == PEOPLE
    for message in sent:
        assert str(message["From"]) == "Programme Office <programme.office@programme.nhs.example>"
        assert str(message["Subject"]).endswith(", welcome to the Leadership Development Programme")
        assert message["List-Unsubscribe"]
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert text is not None and html is not None
        assert "Unsubscribe: http://localhost:8000/" in text.get_content()  # the text twin
        assert "Unsubscribe</a>" in html.get_content()  # the layout's unsubscribe paragraph


def test_a_second_send_sends_nothing_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMS_NOW", "2027-01-12 10:00")
    run("init", "prog")
    run("send", "awareness", "--step", "launch", "--project", "prog")
    again = run("send", "awareness", "--step", "launch", "--project", "prog")
    assert again.exit_code == 0
    assert "awareness/launch: 0 sent, 3 already sent" in again.stdout
    assert len(list((tmp_path / "prog" / "outbox").glob("*.eml"))) == 3


def test_the_installed_command_works_with_no_settings(tmp_path: Path) -> None:
    """The real executable (the umask of `main`, no COMMS_* variable at all): the default
    outbox transport, with a key it generates, and nothing else. The send goes with --step, so
    the result does not depend on the time it runs."""
    comms = Path(sys.executable).with_name("comms")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("COMMS_")}

    def real(command: str) -> subprocess.CompletedProcess[str]:
        args = [str(comms), *shlex.split(command)[1:]]
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    init = real("comms init prog")
    assert init.returncode == 0, init.stderr
    printed = next_commands(init.stdout)
    assert printed == NEXT
    for command in printed:
        done = real(command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
    assert {a for m in messages(tmp_path / "prog" / "outbox")
            for _, a in getaddresses([str(m["To"])])} == PEOPLE
    assert len(list((tmp_path / "prog" / "outbox").glob("*.eml"))) == 3
    assert (tmp_path / "prog" / "comms.db.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("entry", ["notes.txt", ".git", "campaigns/"])
def test_a_folder_that_holds_anything_is_refused(tmp_path: Path, entry: str) -> None:
    folder = tmp_path / "prog"
    folder.mkdir()
    if entry.endswith("/"):
        (folder / entry).mkdir()
    else:
        (folder / entry).write_text("mine\n", encoding="utf-8")
    before = tree(folder)
    result = run("init", "prog")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"{REFUSED}\n"
    assert tree(folder) == before


def test_force_writes_into_it_and_keeps_the_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "prog"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n", encoding="utf-8")
    (folder / "comms.toml").write_text("not toml at all [\n", encoding="utf-8")
    result = run("init", "prog", "--force")
    assert result.exit_code == 0, result.output
    assert next_commands(result.stdout) == NEXT
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert (folder / "comms.toml").read_bytes() == (FILES / "comms.toml").read_bytes()
    assert run("validate", "--project", "prog").exit_code == 0


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "prog").write_text("mine\n", encoding="utf-8")
    result = run("init", "prog", "--force")
    assert result.exit_code == 2
    assert result.stderr == "prog: is a file: give a folder to create the programme in\n"
    assert (tmp_path / "prog").read_text(encoding="utf-8") == "mine\n"


def test_a_file_in_the_way_is_named_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "campaigns").write_text("mine\n", encoding="utf-8")
    result = run("init", "prog", "--force")
    assert result.exit_code == 1
    assert result.stderr == "error: cannot write prog/campaigns: File exists\n"
    assert "Traceback" not in result.output


def test_help_shows_an_example() -> None:
    result = run("init", "--help")
    assert result.exit_code == 0
    assert "init [OPTIONS] DIR" in result.output
    assert "--force" in result.output
    example = result.output.split("Example:\n", 1)[1].splitlines()
    assert [line.strip() for line in example[:3]] == [
        "comms init nmdi-2027", "comms validate --project nmdi-2027",
        "comms send awareness --step launch --project nmdi-2027"]


def test_ci_and_pre_commit_run_validate(tmp_path: Path) -> None:
    run("init", "prog")
    workflow = yaml.safe_load((tmp_path / "prog/.github/workflows/validate.yml").read_text("utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    steps = workflow["jobs"]["validate"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    assert steps[-1]["run"] == "comms validate"
    assert "pip install" in steps[-2]["run"]
    hooks = yaml.safe_load((tmp_path / "prog/.pre-commit-config.yaml").read_text("utf-8"))
    assert hooks["repos"] == [{"repo": "local", "hooks": [{
        "id": "comms-validate", "name": "comms validate", "entry": "comms validate",
        "language": "system", "pass_filenames": False, "always_run": True}]}]


def test_git_keeps_out_the_store_the_key_the_outbox_and_secrets(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    need(shutil.which("git") is not None, "git is not installed")
    monkeypatch.setenv("COMMS_NOW", "2027-01-12 10:00")
    run("init", "prog")
    assert run("send", "awareness", "--step", "launch", "--project", "prog").exit_code == 0
    folder = tmp_path / "prog"
    (folder / ".env").write_text("COMMS_SMTP_PASSWORD=secret\n", encoding="utf-8")
    assert (folder / "comms.db").is_file() and (folder / "comms.db.key").is_file()
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    added = subprocess.run(["git", "add", "--dry-run", "-A"], cwd=folder, check=True,
                           capture_output=True, text=True).stdout
    assert sorted(re.findall(r"^add '(.+)'$", added, flags=re.M)) == WRITTEN


def test_comms_toml_holds_every_setting_with_a_one_line_explanation() -> None:
    text = (FILES / "comms.toml").read_text(encoding="utf-8")
    found = key_lines(text)
    assert sorted(found) == sorted(Settings.model_fields)
    lines = text.splitlines()
    for key, (number, _) in found.items():
        explanation, before = lines[number - 2], lines[number - 3]
        assert explanation.startswith("# ") and not KEY_LINE.match(explanation), key
        assert before == "" or KEY_LINE.match(before), f"{key}: more than one line of explanation"


def test_comms_toml_as_written_sets_nothing(tmp_path: Path) -> None:
    run("init", "prog")
    settings = load_settings(tmp_path / "prog")
    assert settings.model_fields_set == {"project_dir"}


def test_each_uncommented_setting_is_accepted_at_its_default(tmp_path: Path) -> None:
    """Every `# key = value` line with its "# " removed: load_settings takes the file, every key
    is read from it, and a key with a default shows exactly that default."""
    run("init", "prog")
    path = tmp_path / "prog" / "comms.toml"
    text = path.read_text(encoding="utf-8")
    uncommented = "\n".join(line[2:] if KEY_LINE.match(line) else line
                            for line in text.splitlines())
    assert tomllib.loads(uncommented).keys() == key_lines(text).keys()
    path.write_text(uncommented, encoding="utf-8")
    settings = load_settings(tmp_path / "prog")
    assert settings.model_fields_set == set(Settings.model_fields)
    assert settings.project_dir == tmp_path / "prog"  # the line changes nothing, as it says
    for name, field in Settings.model_fields.items():
        if name == "project_dir":
            continue
        if field.default is None:
            assert getattr(settings, name) is not None, name  # read from the file
        else:
            assert getattr(settings, name) == field.default, name


def test_the_starter_files_ship_as_package_data() -> None:
    """setuptools' globs skip dotfiles, so none is kept under comms/scaffold/ (dot-X becomes .X);
    pyproject.toml's package data takes the whole folder."""
    hidden = [p for p in FILES.rglob(".*")]
    assert hidden == []
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "scaffold/**/*" in pyproject["tool"]["setuptools"]["package-data"]["comms"]


def test_the_readme_shows_what_init_prints() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Start a programme\n", 1)[1].split("\n## ", 1)[0]
    shown = section.split("$ comms init nmdi-2027\n", 1)[1].split("```", 1)[0]
    assert run("init", "nmdi-2027").stdout == shown
