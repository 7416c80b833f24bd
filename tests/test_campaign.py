"""Campaign files: strict schema, line-numbered errors, cross-references, JSON Schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from comms import _yaml
from comms.campaign import Campaign, check_references, json_schema, load_campaign
from comms.errors import ConfigError

GOOD = """\
id: demo
name: Demo
sender: {email: office@demo.example, name: Demo Office}
audience:
  roles: [manager]
events:
  - id: ws1
    title: Workshop
    starts: 2027-01-14 09:30
    ends: 2027-01-14 16:30
    organiser: {email: events@demo.example}
steps:
  - id: launch
    template: t/launch
    subject: Hello
    send_at: 2026-12-01 09:00
  - id: follow
    template: t/launch
    subject: Again
    after: {step: launch, days: 3}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def messages(path: Path) -> list[str]:
    try:
        load_campaign(path, Path("campaigns/demo.yaml"))
    except _yaml.ValidationErrors as exc:
        return [e.location_message() for e in exc.errors]
    except ConfigError as exc:
        return [exc.location_message()]
    return []


def test_good_file_loads_with_naive_local_times(tmp_path: Path) -> None:
    campaign, _ = load_campaign(write(tmp_path, GOOD))
    assert campaign.steps[1].after is not None
    assert campaign.steps[1].after.delta.days == 3
    assert campaign.events[0].starts.hour == 9 and campaign.events[0].starts.tzinfo is None


def test_unknown_key_names_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("    subject: Again\n", "    subject: Again\n    subjet: typo\n")
    assert messages(write(tmp_path, text)) == [
        "campaigns/demo.yaml:20: steps[1].subjet: unknown key (did you mean subject?)"]


def test_all_problems_reported_in_one_pass(tmp_path: Path) -> None:
    text = (GOOD.replace("name: Demo\n", "")
            .replace("email: office@demo.example", "email: not-an-address")
            .replace("    send_at: 2026-12-01 09:00\n", ""))
    found = messages(write(tmp_path, text))
    assert len(found) == 3, found
    assert found[0] == "campaigns/demo.yaml:1: name: required key is missing"
    assert found[1].startswith("campaigns/demo.yaml:2: sender.email: invalid email address")
    assert found[2] == ("campaigns/demo.yaml:12: steps[0]: step 'launch' needs exactly one timing "
                        "rule of send_at | after | before | cron | now (found: none)")


def test_two_timing_rules_refused(tmp_path: Path) -> None:
    text = GOOD.replace("    send_at: 2026-12-01 09:00\n",
                        "    send_at: 2026-12-01 09:00\n    now: true\n")
    assert messages(write(tmp_path, text)) == [
        "campaigns/demo.yaml:13: steps[0]: step 'launch' needs exactly one timing rule of "
        "send_at | after | before | cron | now (found: send_at, now)"]


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    found = messages(write(tmp_path, GOOD.replace("  roles: [manager]", "  roles: [manager")))
    assert len(found) == 1 and found[0].startswith("campaigns/demo.yaml:6: YAML syntax")


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    found = messages(write(tmp_path, GOOD.replace("name: Demo\n", "name: Demo\nname: Again\n")))
    assert found == ["campaigns/demo.yaml:3: duplicate key 'name' (first at line 2)"]


@pytest.mark.parametrize("subject", ["Hello\\r\\nBcc: x@evil.example", "Hi\\u0000there"])
def test_header_injection_in_sender_name_refused(tmp_path: Path, subject: str) -> None:
    text = GOOD.replace("name: Demo Office", f'name: "{subject}"')
    found = messages(write(tmp_path, text))
    assert found and "line breaks and NUL characters are not allowed" in found[0]
    assert found[0].startswith("campaigns/demo.yaml:3: sender.name:")


def references(tmp_path: Path, text: str, templates: set[str] | None = None) -> list[str]:
    campaign, located = load_campaign(write(tmp_path, text), Path("campaigns/demo.yaml"))
    known = templates if templates is not None else {"t/launch"}
    return [e.location_message() for e in check_references(
        campaign, located, schedules={"uk-working-hours"}, template_exists=known.__contains__)]


def test_cross_references(tmp_path: Path) -> None:
    text = (GOOD.replace("after: {step: launch, days: 3}", "after: {step: lanch, days: 3}")
            .replace("roles: [manager]", "roles: [manager]\nschedule: office-hours"))
    assert references(tmp_path, text, templates=set()) == [
        "campaigns/demo.yaml:6: schedule: unknown schedule 'office-hours' "
        "(schedules are: uk-working-hours)",
        "campaigns/demo.yaml:15: steps[0].template: unknown template 't/launch' "
        "(expected templates/t/launch.html.j2)",
        "campaigns/demo.yaml:19: steps[1].template: unknown template 't/launch' "
        "(expected templates/t/launch.html.j2)",
        "campaigns/demo.yaml:21: steps[1].after.step: unknown step 'lanch' (steps are: launch) "
        "— did you mean launch?",
    ]


def test_duplicate_ids_and_unknown_event(tmp_path: Path) -> None:
    text = GOOD.replace("  - id: follow", "  - id: launch").replace(
        "after: {step: launch, days: 3}", "before: {event: ws2, days: 3}")
    assert references(tmp_path, text) == [
        "campaigns/demo.yaml:17: steps[1].id: duplicate step id 'launch'",
        "campaigns/demo.yaml:20: steps[1].before.event: unknown event 'ws2' (events are: ws1) "
        "— did you mean ws1?",
    ]


def test_after_cycle_refused(tmp_path: Path) -> None:
    text = GOOD.replace("    send_at: 2026-12-01 09:00\n", "    after: {step: follow}\n")
    found = references(tmp_path, text)
    assert "campaigns/demo.yaml:16: steps[0].after: step 'launch' waits on itself through 'after'" \
        in found


def test_json_schema_covers_every_model_key() -> None:
    schema = json_schema()
    assert schema["title"] == "comms campaign"
    assert set(schema["properties"]) == set(Campaign.model_fields)  # type: ignore[call-overload]
    step = schema["$defs"]["Step"]  # type: ignore[index]
    assert {"send_at", "after", "before", "cron", "until", "now", "only_if"} <= set(step["properties"])
    assert step["additionalProperties"] is False


@pytest.mark.parametrize(("after", "message"), [
    ("days: 99999999999999999999999", "steps[1].after.days: at most 3,653 days (10 years): a "
                                      "longer delay is surely a typo"),
    ("hours: 100000", "steps[1].after.hours: at most 87,672 hours (10 years)"),
    ("minutes: 9999999999", "steps[1].after.minutes: at most 5,260,320 minutes (10 years)"),
    ("days: 3000, hours: 20000", "steps[1].after: the delay adds up to 3,833 days: at most 3,653 "
                                 "(10 years)"),
])
def test_delays_are_bounded_to_ten_years(tmp_path: Path, after: str, message: str) -> None:
    found = messages(write(tmp_path, GOOD.replace("days: 3}", f"{after}}}")))
    assert len(found) == 1 and found[0].startswith(f"campaigns/demo.yaml:20: {message}"), found


@pytest.mark.parametrize(("old", "new", "message"), [
    ("starts: 2027-01-14 09:30", "starts: 2027-01-14 09:30:00+01:00",
     "campaigns/demo.yaml:9: events[0].starts: write a local time without an offset"),
    ("send_at: 2026-12-01 09:00", "send_at: 0001-01-01 09:00",
     "campaigns/demo.yaml:16: steps[0].send_at: the year 1 is out of range (1970-2999)"),
    ("    organiser:", "    timezone: Mars/Base\n    organiser:",
     "campaigns/demo.yaml:11: events[0].timezone: unknown time zone 'Mars/Base' (use an IANA "
     "name like Europe/London)"),
    ("template: t/launch\n    subject: Hello", "template: ../../etc/passwd\n    subject: Hello",
     "campaigns/demo.yaml:14: steps[0].template: '../../etc/passwd' is not a template name"),
    ("id: demo", "id: Demo Campaign", "campaigns/demo.yaml:1: id: 'Demo Campaign' is not an id"),
    ("    organiser:", "    capacity: 100000000000000000000\n    organiser:",
     "campaigns/demo.yaml:11: events[0].capacity: Input should be less than or equal to 1000000"),
])
def test_values_out_of_bounds_are_refused_at_their_line(tmp_path: Path, old: str, new: str,
                                                        message: str) -> None:
    found = messages(write(tmp_path, GOOD.replace(old, new)))
    assert len(found) == 1 and found[0].startswith(message), found


def test_cron_of_unicode_digits_is_a_located_problem(tmp_path: Path) -> None:
    text = GOOD.replace("send_at: 2026-12-01 09:00", 'cron: "0 9 \u00b2 * *"')
    assert references(tmp_path, text) == [
        "campaigns/demo.yaml:16: steps[0].cron: cron '0 9 \u00b2 * *' may hold only ASCII digits, "
        "names (mon, jan) and * , - /"]


@pytest.mark.parametrize(("text", "message"), [
    ("a: &x [*x]\n", "campaigns/demo.yaml:1: an alias refers to a value that contains it"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "campaigns/demo.yaml:1: YAML syntax: nested more "
                                             "than 64 levels deep"),
    ("a: 1\nb: x\x00y\n", "campaigns/demo.yaml:2: control character U+0000 is not allowed"),
    ("a:\n\tb: 1\n", "campaigns/demo.yaml:2: YAML does not allow tabs for indentation; use "
                   "spaces (line 2, column 1)"),
    ("? [a]\n: 1\n", "campaigns/demo.yaml:1: a key must be a plain name"),
    ("x: 1\n~: 2\n", "campaigns/demo.yaml:2: the key '~' does not read as a name"),
    ("- a\n- b\n", "campaigns/demo.yaml:1: expected a mapping of keys"),
])
def test_hostile_yaml_is_a_located_error(tmp_path: Path, text: str, message: str) -> None:
    found = messages(write(tmp_path, text))
    assert found and found[0].startswith(message), found


def test_billion_laughs_is_refused_quickly_and_small(tmp_path: Path) -> None:
    import resource
    import time

    laughs = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(8))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    found = messages(write(tmp_path, laughs))
    assert time.monotonic() - started < 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB
    assert found == ['campaigns/demo.yaml:1: aliases repeat more than 10,000 values (a "billion '
                     'laughs" file?): write the values out, or use fewer aliases']


def test_a_file_not_in_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_bytes(GOOD.replace("name: Demo Office", "name: Caf\xe9").encode("latin-1"))
    assert messages(path) == ["campaigns/demo.yaml:3: not UTF-8: byte 0xe9 at column 47 cannot be "
                              "read (save the file as UTF-8)"]


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = GOOD.replace("sender: {email: office@demo.example, name: Demo Office}",
                        "office: &office {email: office@demo.example, name: Demo Office}\n"
                        "sender:\n  <<: *office").replace("id: demo\n", "id: demo\n", 1)
    found = messages(write(tmp_path, text))
    assert found == ["campaigns/demo.yaml:3: office: unknown key (check its spelling against the "
                     "README's key reference)"]
