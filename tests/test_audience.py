"""The stakeholder directory: CSV/YAML import with per-row checks; audience filters in SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
