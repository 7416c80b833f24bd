"""The stakeholder directory: CSV/YAML import with per-row checks; audience filters in SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from comms.audience import read_directory
from comms.campaign import Audience, AudienceExclude, OnlyIf
from comms.store import Store, tables
from comms.store.stakeholders import sync

HEADER = "email,first_name,last_name,role,organisation,borough,job_title,tags\n"
ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def problems(tmp_path: Path, *paths: Path) -> list[str]:
    return [p.location_message() for p in read_directory(paths, tmp_path).problems]


def test_example_directory_reads_clean() -> None:
    directory = read_directory([ROOT / "stakeholders" / "sel-directory.csv"])
    assert directory.problems == []
    roles = [p.role for p in directory.people]
    assert len(directory.people) == 165
    assert (roles.count("pct_lead"), roles.count("manager"), roles.count("mentor")) == (6, 80, 75)


def test_excel_csv_with_bom_and_semicolons(tmp_path: Path) -> None:
    text = ("\ufeffEmail;First name;Last name;Role;Organisation;Borough;Job title;Tags\r\n"
            "Siobhan.OConnor@Lambeth-PCT.nhs.example;Siobhán;O'Connor;Manager;Lambeth PCT;"
            'Lambeth;Head of Practice;"primary-care,nmdi-cohort-1"\r\n')
    path = write(tmp_path, "excel.csv", text.encode("utf-8"))
    directory = read_directory([path], tmp_path)
    assert directory.problems == []
    [person] = directory.people
    assert person.email == "Siobhan.OConnor@lambeth-pct.nhs.example"
    assert person.key == "siobhan.oconnor@lambeth-pct.nhs.example"
    assert (person.first_name, person.last_name, person.role) == ("Siobhán", "O'Connor", "manager")
    assert person.tags == ("primary-care", "nmdi-cohort-1")


def test_row_problems_name_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER
                 + "a@x.example,A,One,manager,Org,Bexley,,\n"
                 + "not-an-address,B,Two,manager,Org,Bexley,,\n"
                 + "\n"
                 + "A@X.example,A,Again,manager,Org,Bexley,,\n"
                 + "c@x.example,C,Three\n"
                 + '"d@x.example","D\nX",Four,manager,Org,Bexley,,\n'
                 + "e@x.example,E,Five,,Org,Bexley,,\n")
    found = problems(tmp_path, path)
    assert found[0].startswith("people.csv:3: invalid email address 'not-an-address'")
    assert found[1:] == [
        "people.csv:6: expected 8 cells, found 3",
        "people.csv:7: first_name contains a line break or NUL (not allowed: it would reach mail "
        "headers)",
        "people.csv:9: role is empty",
        "people.csv:5: duplicate address A@x.example (first at people.csv:2)",
    ]


def test_duplicates_across_files_name_both(tmp_path: Path) -> None:
    one = write(tmp_path, "one.csv", HEADER + "a@x.example,A,One,manager,,,,\n")
    two = write(tmp_path, "two.yaml", "- email: a@x.example\n  first_name: A\n  last_name: B\n"
                "  role: mentor\n")
    assert problems(tmp_path, one, two) == [
        "two.yaml:1: duplicate address a@x.example (first at one.csv:2)"]


def test_missing_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", "email,name\nx@y.example,X\n")
    assert problems(tmp_path, path) == [
        "people.csv:1: missing column(s): first_name, last_name, role (columns are: email, name)"]


def test_yaml_directory_with_attributes(tmp_path: Path) -> None:
    path = write(tmp_path, "people.yaml", "- email: m@x.example\n  first_name: M\n"
                 "  last_name: N\n  role: mentor\n  tags: [executive]\n  pager: '1234'\n"
                 "- email: bad\n  first_name: B\n  last_name: C\n  role: mentor\n")
    directory = read_directory([path], tmp_path)
    assert [p.location_message() for p in directory.problems][0].startswith(
        "people.yaml:7: invalid email address 'bad'")
    assert directory.people[0].tags == ("executive",)
    assert directory.people[0].attributes == {"pager": "1234"}


def emails(store: Store, audience: Audience, narrower: OnlyIf | None = None) -> set[str]:
    from comms.store.sends import Key
    from comms.store.targets import reach
    from comms.targeting import Target

    target = Target(key=Key("c", "s", "once"), audience=audience, only_if=narrower)
    with store.read() as conn:
        return set(conn.execute(select(tables.stakeholders.c.email)
                                .where(reach(target))).scalars())


def test_audience_filters_on_both_stores(store_url: str) -> None:
    store = Store(store_url)
    people = read_directory([ROOT / "stakeholders" / "sel-directory.csv"]).people
    sync(store, people, now=datetime(2026, 11, 1, tzinfo=UTC))
    assert len(emails(store, Audience(roles=["manager"]))) == 80
    assert len(emails(store, Audience(roles=["MENTOR"]))) == 75
    lambeth = emails(store, Audience(roles=["manager"], boroughs=["lambeth"]))
    expected = {p.key for p in people if p.role == "manager" and p.borough == "Lambeth"}
    assert lambeth == expected and lambeth
    cohort1 = emails(store, Audience(tags=["primary-care", "nmdi-cohort-1"]))
    assert cohort1 == {p.key for p in people if "nmdi-cohort-1" in p.tags}
    without_bexley = emails(store, Audience(roles=["manager"],
                                            exclude=AudienceExclude(boroughs=["Bexley"])))
    assert without_bexley == {p.key for p in people if p.role == "manager"
                              and p.borough != "Bexley"}
    narrowed = emails(store, Audience(), OnlyIf(roles=["pct_lead"]))
    assert len(narrowed) == 6
    store.dispose()


def test_sync_deactivates_people_gone_from_a_source(store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    path = write(tmp_path, "p.csv", HEADER + "a@x.example,A,One,manager,,,,\n"
                 "b@x.example,B,Two,manager,,,,\n")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    sync(store, read_directory([path], tmp_path).people, now=now)
    write(tmp_path, "p.csv", HEADER + "b@x.example,Bea,Two,manager,,,,\n")
    result = sync(store, read_directory([path], tmp_path).people, now=now)
    assert (result.upserted, result.deactivated) == (1, 1)
    assert emails(store, Audience()) == {"b@x.example"}
    with store.read() as conn:
        first = conn.execute(select(tables.stakeholders.c.first_name)
                             .where(tables.stakeholders.c.email == "b@x.example")).scalar()
    assert first == "Bea"
    store.dispose()


@pytest.mark.parametrize(("rows", "message"), [
    ("  last_name: N\n  role: [mentor, manager]\n",
     "people.yaml:4: [0].role: role must be one value (text, a number, a date), not a list"),
    ("  last_name: {family: N}\n  role: mentor\n",
     "people.yaml:3: [0].last_name: last_name must be one value (text, a number, a date), not a "
     "mapping"),
    ("  last_name: N\n  role: mentor\n  tags: [a, [b]]\n",
     "people.yaml:5: [0].tags: tags must be a list of words, like [primary-care, cohort-1]"),
    ("  last_name: N\n  role: mentor\n  phones: [1, 2]\n",
     "people.yaml:5: [0].phones: attribute 'phones' must be one value (text, a number, a date), "
     "not a list"),
])
def test_yaml_values_must_be_single_values(tmp_path: Path, rows: str, message: str) -> None:
    path = write(tmp_path, "people.yaml", "- email: m@x.example\n  first_name: M\n" + rows)
    assert problems(tmp_path, path) == [message]


def test_yaml_tags_may_be_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "people.yaml", "- email: m@x.example\n  first_name: M\n  last_name: N\n"
                 "  role: mentor\n  tags: [Executive, 2024]\n")
    assert read_directory([path], tmp_path).people[0].tags == ("executive", "2024")


@pytest.mark.parametrize(("line", "message"), [
    ("a@x.example,A,One,manager,Org,Bexley,Lead," + "t;" * 6000 + "\n",
     "people.csv:2: tags is 12,000 characters long (at most 10,000)"),
    ('a@x.example,A,One,manager,Org,Bexley,"' + "x" * 200_000 + '",\n',
     "people.csv:2: cannot read this row: a cell is longer than 131,072 characters (cells hold at "
     "most 10,000): is a quote left open from here?"),
    ("a@x.example,A,One,manager,Org,Bexley,Lead\x07,\n",
     "people.csv:2: job_title contains the control character U+0007: delete it"),
    ('a@x.example,A,"One,manager,Org,Bexley,Lead,\nb@x.example,B,Two,manager,,,,\n',
     "people.csv:2: expected 8 cells, found 3 (a quote left open here? a cell runs over lines)"),
])
def test_csv_cells_are_bounded_and_clean(tmp_path: Path, line: str, message: str) -> None:
    assert problems(tmp_path, write(tmp_path, "people.csv", HEADER + line)) == [message]


def test_csv_columns_may_not_repeat(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER.rstrip("\n") + ",role\n")
    assert problems(tmp_path, path) == [
        "people.csv:1: column(s) role appear more than once: keep one of each"]


def test_csv_in_utf16_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", (HEADER + "é@x.example,Zoë,N,manager,,,,\n").replace(
        ",", "\t").encode("utf-16"))
    directory = read_directory([path], tmp_path)
    assert directory.problems == [] and directory.people[0].first_name == "Zoë"


def test_fast_address_check_agrees_with_email_validator() -> None:
    from email_validator import EmailNotValidError, validate_email

    from comms._types import normalise_email

    cases = ["a@x.example", "A.B@Sub.Example.COM", "x@localhost", "x@foo.invalid", "x@a..b",
             "a..b@x.com", ".a@x.com", "ünï@x.com", "a@ünï.com", '"q q"@x.com', "a" * 65 + "@x.com",
             "a@" + "b" * 250 + ".com", "a@x_y.com", "a@xn--bcher-kva.example", "o'neil+nmdi@x.nhs.uk"]
    for address in cases:
        try:
            expected: str | None = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError:
            expected = None
        try:
            found: str | None = normalise_email(address)
        except ValueError:
            found = None
        assert found == expected, address


@pytest.mark.parametrize("excluded", [3, 50_000])
def test_exclusions_of_any_length(store_url: str, excluded: int) -> None:
    """More addresses than SQLite binds (32,766) or PostgreSQL (65,535) go as one parameter."""
    store = Store(store_url)
    people = read_directory([ROOT / "stakeholders" / "sel-directory.csv"]).people
    sync(store, people, now=datetime(2026, 11, 1, tzinfo=UTC))
    managers = [p.email for p in people if p.role == "manager"]
    others = [f"someone.{i}@nowhere.example" for i in range(excluded)]
    audience = Audience(roles=["manager"], exclude=AudienceExclude(emails=managers[:3] + others))
    assert len(emails(store, audience)) == 77
    audience = Audience(roles=["manager"], exclude=AudienceExclude(emails=others))
    assert len(emails(store, audience)) == 80  # the same query shape, other values
    store.dispose()


# --- pre-flight over the directory: one representative of each shape -------------------------


def test_preflight_counts_everyone_of_the_failing_shapes(project_dir: Path) -> None:
    from comms.preflight import check
    from comms.project import load_project

    extra = "".join(f"mentor.{i}@extra.example,M{i},Extra,mentor,,,,\n" for i in range(1000))
    (project_dir / "stakeholders" / "extra.csv").write_text(HEADER + extra, encoding="utf-8")
    body = project_dir / "templates" / "mentors" / "call.txt.j2"
    body.write_text(body.read_text(encoding="utf-8") + "{{ stakeholder.nickname }}\n", "utf-8")
    found = [p.location_message() for p in check(load_project(project_dir), timezone="Europe/London",
                                                 now=datetime(2026, 11, 1, tzinfo=UTC))]
    assert len(found) == 1, found
    assert "has no attribute 'nickname'" in found[0]
    assert found[0].endswith("(and 1074 more recipients); step 'call' of "
                             "campaigns/mentor-recruitment.yaml")


def test_check_campaign_renders_one_campaign_and_writes_nothing(project_dir: Path) -> None:
    from comms.preflight import check_campaign
    from comms.project import load_project

    launch = project_dir / "templates" / "awareness" / "launch.txt.j2"
    launch.write_text(launch.read_text(encoding="utf-8") + "{{ 1 / 0 }}\n", "utf-8")
    project = load_project(project_dir)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    [problem] = check_campaign(project, project.campaign("nmdi-awareness"),
                               timezone="Europe/London", now=now)
    assert problem.location_message().startswith(
        "templates/awareness/launch.txt.j2:24: ZeroDivisionError: division by zero (rendering for ")
    assert check_campaign(project, project.campaign("workshops"), timezone="Europe/London",
                          now=now) == []
    assert sorted(p.name for p in project_dir.iterdir()) == ["campaigns", "pairs", "schedules",
                                                             "stakeholders", "templates"]


def test_csv_in_cp1252_is_read_whole_when_its_first_odd_byte_comes_late(tmp_path: Path) -> None:
    """The file is read a line at a time; a byte that is not UTF-8 far into it starts again in
    cp1252, keeping nothing twice."""
    rows = "".join(f"p{i}@x.example,P,{i},manager,,,,\n" for i in range(2000))
    path = write(tmp_path, "people.csv", (HEADER + "bad@x.example,B,A,,,,,\n" + rows
                                          + "z@x.example,Zo\xeb,N,manager,,,,\n").encode("cp1252"))
    directory = read_directory([path], tmp_path)
    assert [p.location_message() for p in directory.problems] == ["people.csv:2: role is empty"]
    assert len(directory.people) == 2001 and directory.people[-1].first_name == "Zo\xeb"


def test_people_share_what_repeats(tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER + "".join(
        f"p{i}@nhs.example,P,{i},Manager,Lewisham PCT,Lewisham,Practice Manager,a;b\n"
        for i in range(3)))
    first, *others = read_directory([path], tmp_path).people
    assert (first.role, first.tags, dict(first.attributes)) == ("manager", ("a", "b"), {})
    for other in others:
        assert other.organisation is first.organisation and other.tags is first.tags
        assert other.role is first.role and other.attributes is first.attributes
