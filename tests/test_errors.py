"""Errors in plain words: one line per problem, naming the place and saying the fix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from comms import _yaml
from comms.audience import Stakeholder
from comms.campaign import load_campaign
from comms.cli import cli
from comms.errors import ConfigError, NotFound, did_you_mean, suggestion
from comms.preflight import check, html_warnings, visible_words
from comms.project import load_project
from comms.render import Renderer

NOW = datetime(2026, 11, 1, tzinfo=UTC)
HAS = ("email, first_name, last_name, full_name, role, organisation, borough, job_title, tags, "
       "attributes")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def lines(result: Result) -> list[str]:
    return result.output.strip().splitlines()


def problems(project_dir: Path) -> list[str]:
    return [p.location_message() for p in check(load_project(project_dir),
                                                 timezone="Europe/London", now=NOW)]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- the helper ----------------------------------------------------------------------------------


def test_did_you_mean_offers_only_a_close_name() -> None:
    assert did_you_mean("firstname", ["email", "first_name", "last_name"]) == "first_name"
    assert did_you_mean("zzz", ["email", "first_name"]) is None
    assert suggestion("lanch", ["launch", "follow-up"]) == " — did you mean launch?"
    assert suggestion("nope", ["launch", "follow-up"]) == ""


# --- YAML ------------------------------------------------------------------------------------------


def test_a_tab_in_the_indentation_names_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text("id: demo\naudience:\n  roles: [a]\n\ttags: [b]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        _yaml.load(path, Path("campaigns/demo.yaml"))
    assert info.value.location_message() == (
        "campaigns/demo.yaml:4: YAML does not allow tabs for indentation; use spaces "
        "(line 4, column 1)")


def test_a_date_that_is_not_one_shows_the_form(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    edit(path, "send_at: 2026-12-01 09:00", "send_at: 2026-13-01 09:00")
    with pytest.raises(_yaml.ValidationErrors) as info:
        load_campaign(path, Path("campaigns/nmdi-awareness.yaml"))
    assert [e.location_message() for e in info.value.errors] == [
        "campaigns/nmdi-awareness.yaml:14: steps[0].send_at: '2026-13-01 09:00' is not a date and "
        "time: write it as YYYY-MM-DD HH:MM, like 2026-12-07 09:00"]


def test_a_date_yaml_cannot_read_says_the_same(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    edit(path, "send_at: 2026-12-01 09:00", "send_at: 2026-13-45")
    with pytest.raises(_yaml.ValidationErrors) as info:
        load_campaign(path, Path("campaigns/nmdi-awareness.yaml"))
    assert [e.location_message() for e in info.value.errors] == [
        "campaigns/nmdi-awareness.yaml:14: steps[0].send_at: '2026-13-45' is not a date and "
        "time: write it as YYYY-MM-DD HH:MM, like 2026-12-07 09:00"]


def test_a_misspelt_key_offers_the_key_once(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    edit(path, "schedule: uk-working-hours", "scheduel: uk-working-hours")
    edit(path, '    subject: "{{ stakeholder.first_name }}, develop',
         '    subjcet: "{{ stakeholder.first_name }}, develop')
    with pytest.raises(_yaml.ValidationErrors) as info:
        load_campaign(path, Path("campaigns/nmdi-awareness.yaml"))
    assert [e.location_message() for e in info.value.errors] == [  # no "subject: missing"
        "campaigns/nmdi-awareness.yaml:13: steps[0].subjcet: unknown key (did you mean subject?)",
        "campaigns/nmdi-awareness.yaml:6: scheduel: unknown key (did you mean schedule?)"]


def test_an_unknown_key_like_no_other_keeps_the_readme_hint(project_dir: Path) -> None:
    path = project_dir / "campaigns" / "nmdi-awareness.yaml"
    edit(path, "schedule: uk-working-hours", "schedule: uk-working-hours\nxyzzy: 1")
    with pytest.raises(_yaml.ValidationErrors) as info:
        load_campaign(path, Path("campaigns/nmdi-awareness.yaml"))
    assert [e.location_message() for e in info.value.errors] == [
        "campaigns/nmdi-awareness.yaml:7: xyzzy: unknown key (check its spelling against the "
        "README's key reference)"]


# --- templates -------------------------------------------------------------------------------------


def person(**attributes: object) -> Stakeholder:
    return Stakeholder(email="ann@x.example", first_name="Ann", last_name="Lee", role="manager",
                       attributes=attributes)


@pytest.mark.parametrize(("body", "message"), [
    ("<p>Hi\n\n{{ stakeholder.firstname }}</p>\n",
     f"templates/awareness/launch.html.j2:3: stakeholder has no attribute 'firstname' (did you "
     f"mean first_name? stakeholder has: {HAS})"),
    ("{{ stakeholder.zzzz }}\n",
     f"templates/awareness/launch.html.j2:1: stakeholder has no attribute 'zzzz' "
     f"(stakeholder has: {HAS})"),
    ("{{ evnt.title }}\n",
     "templates/awareness/launch.html.j2:1: 'evnt' is undefined (did you mean event?)"),
    ("{{ zzzz }}\n", "templates/awareness/launch.html.j2:1: 'zzzz' is undefined"),
    ("{{ stakeholder.attributes.phone }}\n",
     "templates/awareness/launch.html.j2:1: stakeholder.attributes has no attribute 'phone' "
     "(did you mean phones? stakeholder.attributes has: phones)"),
])
def test_an_undefined_name_says_what_there_is(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "awareness").mkdir()
    (tmp_path / "awareness" / "launch.html.j2").write_text(body, encoding="utf-8")
    renderer = Renderer(tmp_path)
    with pytest.raises(ConfigError) as info:
        renderer.render(renderer.compile("awareness/launch", "s"),
                        {"stakeholder": person(phones="1"), "event": None})
    assert info.value.location_message() == message


def test_an_attribute_nobody_has_says_it_is_empty(tmp_path: Path) -> None:
    (tmp_path / "hello.html.j2").write_text("{{ stakeholder.attributes.phone }}", "utf-8")
    renderer = Renderer(tmp_path)
    with pytest.raises(ConfigError) as info:
        renderer.render(renderer.compile("hello", "s"), {"stakeholder": person()}, who="a@x")
    assert info.value.location_message() == (
        "templates/hello.html.j2:1: stakeholder.attributes has no attribute 'phone' "
        "(stakeholder.attributes is empty) (rendering for a@x)")


# --- one line for one cause ------------------------------------------------------------------------


def test_an_unknown_event_is_said_once(project_dir: Path) -> None:
    edit(project_dir / "campaigns" / "workshops.yaml", "    event: ws1\n    template: events/invite",
         "    event: ws2\n    template: events/invite")
    assert problems(project_dir) == [
        "campaigns/workshops.yaml:26: steps[0].event: unknown event 'ws2' (events are: ws1) "
        "— did you mean ws1?"]


def test_a_bad_schedule_window_is_said_once(project_dir: Path) -> None:
    edit(project_dir / "schedules" / "uk-working-hours.yaml", '"09:00-17:30"', '"25:00-26:00"')
    assert problems(project_dir) == [
        "schedules/uk-working-hours.yaml:5: window: window must look like \"09:00-17:30\" with "
        "start before end, not '25:00-26:00'"]


def test_a_missing_layout_is_said_once_per_template(project_dir: Path) -> None:
    edit(project_dir / "templates" / "awareness" / "launch.html.j2", "layouts/email.html.j2",
         "layouts/nope.html.j2")
    assert problems(project_dir) == [
        "templates/awareness/launch.html.j2:1: template not found: templates/layouts/nope.html.j2"]


def test_an_unknown_campaign_offers_a_close_one(project_dir: Path) -> None:
    project = load_project(project_dir)
    known = ("mentor-recruitment, mentoring, nmdi-awareness, pct-leads-briefing, steering-pack, "
             "workshops")
    with pytest.raises(NotFound) as info:
        project.campaign("nmdi-awarness")
    assert str(info.value) == (f"unknown campaign 'nmdi-awarness' (campaigns are: {known}) — did "
                               "you mean nmdi-awareness?")
    with pytest.raises(NotFound) as info:
        project.campaign("nope")
    assert str(info.value) == f"unknown campaign 'nope' (campaigns are: {known})"


# --- the project folder ----------------------------------------------------------------------------


def test_a_missing_project_folder_is_named(tmp_path: Path) -> None:
    result = run("validate", "--project", str(tmp_path / "x" / "y"))
    assert result.exit_code == 2
    assert lines(result) == [f"error: no folder {tmp_path / 'x' / 'y'} (--project)"]


def test_a_folder_without_campaigns_keeps_its_message(tmp_path: Path) -> None:
    result = run("validate", "--project", str(tmp_path))
    assert result.exit_code == 2
    assert lines(result) == [
        f"{tmp_path.resolve()}: not a comms project: no campaigns/ folder here (use --project DIR)"]


def test_an_empty_project_is_warned_of(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    result = run("validate", "--project", str(tmp_path))
    assert result.exit_code == 0
    assert lines(result) == [
        "campaigns/: warning: no campaign files yet (campaigns/*.yaml)",
        "stakeholders/: warning: no stakeholders yet (stakeholders/*.csv or *.yaml)",
        "ok: 0 campaigns, 0 schedules, 0 stakeholders"]


def test_no_stakeholders_is_one_warning_not_one_per_campaign(project_dir: Path) -> None:
    for folder in ("stakeholders", "pairs"):  # pairs name people: without them, no pairs
        for path in (project_dir / folder).iterdir():
            path.unlink()
    for name in ("mentoring", "steering-pack"):  # the pack reports on mentoring
        (project_dir / "campaigns" / f"{name}.yaml").unlink()
    assert problems(project_dir) == [
        "stakeholders/: warning: no stakeholders yet (stakeholders/*.csv or *.yaml)"]


# --- confirmation ----------------------------------------------------------------------------------


def test_a_confirmation_without_a_terminal_asks_for_yes(project_dir: Path) -> None:
    result = run("contacts", "forget", "ann@x.example", "--project", str(project_dir))
    assert result.exit_code == 2
    assert lines(result) == [
        "error: contacts forget asks for confirmation: pass --yes to confirm without a terminal"]


# --- template checks (warnings) --------------------------------------------------------------------


def test_html_warnings_name_the_line() -> None:
    source = ('<!doctype html>\n<html>\n<body>\n<img src="{{ logo }}">\n<img src="a.png" alt="">\n'
              '<p><a href="{{ url }}">Click here</a>, <a href="x">read more</a>.</p>\n'
              '<p><a href="{{ url }}">the workshop programme</a></p>\n</body>\n</html>\n')
    assert html_warnings(source) == [
        (2, '<html> has no lang: add lang="en-GB" (or the language of the message), so that '
            "screen readers read it right"),
        (4, '<img> has no alt text: add alt="what it shows" (alt="" for a decoration)'),
        (6, "link text 'Click here' says nothing out of context: say where it goes (like 'the "
            "workshop programme')"),
        (6, "link text 'read more' says nothing out of context: say where it goes (like 'the "
            "workshop programme')")]


def test_visible_words_leave_out_tags_statements_and_styles() -> None:
    assert visible_words("<style>p { x: y }</style>{% if a %}<p>Hi {{ name }}, welcome</p>"
                         "{% endif %}{# a note #}") == 3


def test_validate_warns_of_template_problems(project_dir: Path) -> None:
    launch = project_dir / "templates" / "awareness" / "launch.html.j2"
    (project_dir / "templates" / "awareness" / "launch.txt.j2").unlink()
    launch.write_text('{% extends "layouts/email.html.j2" %}\n{% block content %}\n'
                      '<p><img src="x.png"> <a href="https://x.example">here</a></p>\n'
                      "{% endblock %}\n", encoding="utf-8")
    edit(project_dir / "campaigns" / "nmdi-awareness.yaml", "develop as a leader with the NMDI",
         "develop as a leader with the National Management Development Initiative this winter")
    result = run("validate", "--project", str(project_dir))
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        "campaigns/nmdi-awareness.yaml:13: warning: steps[0].subject: the subject is 90 "
        "characters once rendered (for tariq.nowak@bexley-ct.nhs.example): over 78, inboxes cut "
        "it short; shorten it",
        "templates/awareness/launch.html.j2:1: warning: no text twin, and only 1 word of text "
        "to make the plain-text part from: write templates/awareness/launch.txt.j2",
        'templates/awareness/launch.html.j2:3: warning: <img> has no alt text: add alt="what it '
        'shows" (alt="" for a decoration)',
        "templates/awareness/launch.html.j2:3: warning: link text 'here' says nothing out of "
        "context: say where it goes (like 'the workshop programme')",
        "ok: 6 campaigns, 1 schedules, 165 stakeholders"]


def test_the_example_project_has_no_warnings(project_dir: Path) -> None:
    result = run("validate", "--project", str(project_dir))
    assert lines(result) == ["ok: 6 campaigns, 1 schedules, 165 stakeholders"]


def test_an_empty_campaign_file_is_one_line(project_dir: Path) -> None:
    (project_dir / "campaigns" / "nmdi-awareness.yaml").write_text("# nothing yet\n", "utf-8")
    assert problems(project_dir) == [
        "campaigns/nmdi-awareness.yaml:1: the file is empty: write its keys (required: id, name, "
        "sender, steps)"]


def test_a_bad_directory_row_is_not_followed_by_its_pairs(project_dir: Path) -> None:
    edit(project_dir / "stakeholders" / "sel-directory.csv", "marta.chen@bexley-ct.nhs.example",
         "marta.chen at bexley-ct.nhs.example")
    assert problems(project_dir) == [
        "stakeholders/sel-directory.csv:6: invalid email address 'marta.chen at "
        "bexley-ct.nhs.example': An email address must have an @-sign."]


def test_a_layout_error_is_said_once_before_a_send(project_dir: Path) -> None:
    from comms.preflight import check_campaign

    edit(project_dir / "templates" / "layouts" / "email.html.j2", "{% block content %}",
         "{% block content %}{% if %}")
    project = load_project(project_dir)
    found = check_campaign(project, project.campaign("workshops"), timezone="Europe/London",
                           now=NOW)
    assert [p.location_message() for p in found] == [
        "templates/layouts/email.html.j2:44: template syntax: Expected an expression, got 'end "
        "of statement block'"]
