"""Pre-flight: every step of every campaign rendered before anything is sent.

Recipients who look alike to a template are rendered once: people are grouped by their
*shape* — role, tags, which standard fields are empty, which attributes they have (and of what
type) — and one representative of each shape that a step reaches is rendered for it. A failure
counts everyone of the failing shapes. What only one person's values can break (a borough a
template does not know) is caught per message when sending.

Audiences are counted by the same SQL as sending, in a scratch store holding one row for each
group of people that every audience query treats alike (the same role, borough, organisation,
tags and shape, and not named by address in any campaign): 100,000 people make a few hundred
rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from . import _yaml, targeting
from ._types import email_key
from .audience import Stakeholder, from_row
from .campaign import Campaign, Step
from .errors import ConfigError, TemplateError
from .message import Composer, Pairing
from .plan import zone_of
from .project import Project
from .render import HTML_SUFFIX, TEXT_SUFFIX, Renderer
from .schedule import exists_locally
from .store import Conn, Store
from .store import stakeholders as people
from .store.stakeholders import ids_by_email, sync
from .tokens import Tokens
from .transports.base import Message

PREVIEW_UID = "0" * 32
MAX_SUBJECT = 78  # characters of a subject line (RFC 5322's line length; inboxes show fewer)
MIN_TEXT_WORDS = 20  # words of visible text an HTML body needs to make a text part from
_WORD = re.compile(r"\w+")
STANDARD_FIELDS = ("first_name", "last_name", "organisation", "borough", "job_title")
Shape = tuple[Any, ...]


def check(project: Project, *, timezone: str, now: datetime) -> list[ConfigError]:
    """All problems of the project: load errors, then audiences and rendering (warnings too)."""
    problems = list(project.problems)
    composer = _composer(project, timezone)
    html = HtmlChecks(project.renderer)
    # with nobody, or people left out for errors in their rows, "matches nobody" says nothing new
    sound_directory = project.directory.people and not any(
        not p.warning for p in project.directory.problems)
    with _scratch(project, now) as scratch:
        for campaign_id, campaign in project.campaigns.items():
            located = project.sources[campaign_id]
            if sound_directory and not people.count(scratch.conn, targeting.audience_of(campaign)):
                problems.append(located.error(("audience",), "audience matches nobody in "
                                              "stakeholders/", warning=True))
            problems += _organisers_invited(scratch.conn, campaign, located)
            problems += _campaign_problems(scratch, composer, campaign, located,
                                           zone_of(project, campaign, timezone), now,
                                           _broken_steps(project.errors, located, campaign))
            for step in campaign.steps:
                problems += html.of(step.template)
    return _once(problems)


def _once(problems: Iterable[ConfigError]) -> list[ConfigError]:
    """Each problem once (a layout's error is found through every step that uses it)."""
    return list({p.location_message(): p for p in problems}.values())


def check_campaign(project: Project, campaign: Campaign, *, timezone: str,
                   now: datetime) -> list[ConfigError]:
    """The problems of one campaign that loading cannot see: every step rendered for one
    representative recipient of each shape it reaches, and local times skipped by a clock
    change. Writes nothing (for ``comms send`` to call before it sends)."""
    with _scratch(project, now) as scratch:
        return _once(_campaign_problems(scratch, _composer(project, timezone), campaign,
                                        project.sources[campaign.id],
                                        zone_of(project, campaign, timezone), now))


def _composer(project: Project, timezone: str) -> Composer:
    return Composer(project.renderer, Tokens("preflight", "https://comms.invalid"),
                    timezone=timezone)


@dataclass(frozen=True, slots=True)
class _Scratch:
    """A read connection to the scratch store, and how many people each of its rows stands
    for (by stakeholder id)."""

    conn: Conn
    weights: dict[int, int]
    mentors: dict[str, Stakeholder]  # per round of pairs: a mentor to render pairs steps with


@contextmanager
def _scratch(project: Project, now: datetime) -> Iterator[_Scratch]:
    """A scratch store in memory (validate writes nothing to the project's) holding one
    representative row per group of people that audience queries cannot tell apart."""
    store = Store.in_memory()
    try:
        groups = _audience_groups(project.directory.people, _named(project.campaigns.values()))
        sync(store, [person for person, _ in groups], now=now)
        with store.read() as conn:
            ids = ids_by_email(conn, [person.key for person, _ in groups])
            first = {round_id: pairs[0].mentor
                     for round_id, pairs in project.rounds.pairs.items() if pairs}
            wanted = set(first.values())
            by_email = {key: person for person in project.directory.people
                        if (key := person.key) in wanted}
            mentors = {round_id: by_email[mentor] for round_id, mentor in first.items()}
            yield _Scratch(conn, {ids[person.key]: count for person, count in groups}, mentors)
    finally:
        store.dispose()


def _named(campaigns: Iterable[Campaign]) -> set[str]:
    """Addresses that some query asks about by name: exclusions and event organisers."""
    named: set[str] = set()
    for campaign in campaigns:
        named.update(email_key(e) for e in campaign.audience.exclude.emails)
        named.update(email_key(event.organiser.email) for event in campaign.events)
    return named


def _audience_groups(directory: Iterable[Stakeholder],
                     named: set[str]) -> list[tuple[Stakeholder, int]]:
    """(first person, how many) of each group alike for audiences and for templates."""
    groups: dict[Shape, list[Any]] = {}
    for person in directory:
        key = (person.key if person.key in named else None, person.borough, person.organisation,
               shape(person))
        group = groups.get(key)
        if group is None:
            groups[key] = [person, 1]
        else:
            group[1] += 1
    return [(person, count) for person, count in groups.values()]


def shape(person: Stakeholder) -> Shape:
    """What a template can tell about a person without looking at their values: the role and
    tags, which standard fields are empty, which attributes there are and of what type."""
    return (person.role, person.tags, tuple(not getattr(person, name) for name in STANDARD_FIELDS),
            tuple(sorted((name, type(value).__name__) for name, value in person.attributes.items())))


def _broken_steps(errors: Iterable[ConfigError], located: _yaml.Located,
                  campaign: Campaign) -> set[int]:
    """The steps with an error of their own already (an unknown event, step or template):
    rendering them would only say the same again, less clearly."""
    path = str(located.path)
    return {i for i in range(len(campaign.steps)) for e in errors
            if e.path == path and e.key is not None
            and (e.key == f"steps[{i}]" or e.key.startswith((f"steps[{i}].", f"steps[{i}][")))}


def _campaign_problems(scratch: _Scratch, composer: Composer, campaign: Campaign,
                       located: _yaml.Located, zone: ZoneInfo, now: datetime,
                       broken: set[int] = frozenset()) -> list[ConfigError]:  # type: ignore[assignment]
    problems = _clock_changes(campaign, located, zone)
    for index in range(len(campaign.steps)):
        if index not in broken:
            problems += _step_problems(scratch, composer, campaign, index, located, now)
    return problems


def _step_problems(scratch: _Scratch, composer: Composer, campaign: Campaign, index: int,
                   located: _yaml.Located, now: datetime) -> list[ConfigError]:
    """One step rendered for a representative of each shape it reaches; failures alike are
    grouped, counting everyone of the failing shapes."""
    step = campaign.steps[index]
    if not composer.renderer.exists(step.template):
        return []  # loading said so already (unknown template)
    try:
        prepared = composer.prepare(campaign, step, now=now)
    except TemplateError as exc:
        return [_in_campaign(exc, located, index)]
    failures: dict[str, tuple[TemplateError, int]] = {}
    rendered: list[Message] = []
    for person, count in _representatives(scratch, campaign, step):
        pairing = None
        if step.pairs is not None:
            pairing = Pairing(mentor=scratch.mentors.get(step.pairs, person), mentee=person,
                              note="a note")
        try:
            rendered.append(prepared.message(person, PREVIEW_UID, pairing))
        except TemplateError as exc:
            key = f"{exc.path}:{exc.line}:{exc.message.split(' (')[0]}"
            first, seen = failures.get(key, (exc, 0))
            failures[key] = (first, seen + count)
    problems = _rendered_problems(step, index, located, rendered)
    for first, count in failures.values():
        more = f" (and {count - 1} more recipients)" if count > 1 else ""
        problems.append(_in_campaign(first, located, index, more,
                                     f"; step '{step.id}' of {located.path}"))
    return problems


def _rendered_problems(step: Step, index: int, located: _yaml.Located,
                       rendered: list[Message]) -> list[ConfigError]:
    """Warnings about the messages as people get them: a subject too long for an inbox."""
    if not rendered:
        return []
    problems = []
    longest = max(rendered, key=lambda m: len(m.subject))
    if len(longest.subject) > MAX_SUBJECT:
        problems.append(located.error(
            ("steps", index, "subject"), f"the subject is {len(longest.subject)} characters once "
            f"rendered (for {longest.to.email}): over {MAX_SUBJECT}, inboxes cut it short; "
            "shorten it", warning=True))
    return problems


def _representatives(scratch: _Scratch, campaign: Campaign,
                     step: Step) -> list[tuple[Stakeholder, int]]:
    """(first person, how many people) of each shape the step reaches."""
    found: dict[Shape, list[Any]] = {}
    for row in people.reached(scratch.conn, targeting.audience_of(campaign, step)):
        person = from_row(dict(row))
        group = found.setdefault(shape(person), [person, 0])
        group[1] += scratch.weights[row["id"]]
    return [(person, count) for person, count in found.values()]


def _in_campaign(exc: TemplateError, located: _yaml.Located, index: int, more: str = "",
                 step_of: str = "") -> TemplateError:
    """The error where it can be fixed: a step's subject, or a template name that names no
    file, at its line of the campaign; anything else in its template, saying which step."""
    if exc.path is None or exc.path.startswith("subject of "):
        loc = ("steps", index, "template" if exc.path is None else "subject")
        return TemplateError(exc.message + more, path=located.path, line=located.line(loc),
                             key=_yaml.dotted(loc))
    return TemplateError(exc.message + more + step_of, path=exc.path, line=exc.line)


def _organisers_invited(conn: Conn, campaign: Campaign,
                        located: _yaml.Located) -> list[ConfigError]:
    """An organiser in the audience of their own event's invitations is left out; say so."""
    problems = []
    for i, step in enumerate(campaign.steps):
        event = campaign.event(step.event) if step.kind == "invite" and step.event else None
        if event is None:
            continue
        organiser = email_key(event.organiser.email)
        if people.is_reached(conn, targeting.audience_of(campaign, step), organiser):
            problems.append(located.error(
                ("steps", i), f"organiser {event.organiser.email} of event '{event.id}' is in "
                "the audience: they will not be sent their own invitation", warning=True))
    return problems


def _clock_changes(campaign: Campaign, located: _yaml.Located, zone: ZoneInfo) -> list[ConfigError]:
    """Local times that do not exist (skipped by the spring clock change) are refused."""
    problems = []
    times: list[tuple[tuple[str | int, ...], datetime, ZoneInfo]] = [
        (("steps", i, "send_at"), step.send_at, zone)
        for i, step in enumerate(campaign.steps) if step.send_at is not None]
    for i, event in enumerate(campaign.events):
        event_zone = ZoneInfo(event.timezone) if event.timezone else zone
        times += [(("events", i, "starts"), event.starts, event_zone),
                  (("events", i, "ends"), event.ends, event_zone)]
    for loc, moment, moment_zone in times:
        if not exists_locally(moment, moment_zone):
            problems.append(located.error(loc, f"{moment:%Y-%m-%d %H:%M} does not exist in "
                                          f"{moment_zone.key} (the clocks go forward then)"))
    return problems


# --- what the HTML of templates gets wrong for readers (warnings) -------------------------------

VAGUE_LINKS = frozenset({"click here", "here", "read more", "more", "click", "link", "this link",
                         "click this link", "find out more"})
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class HtmlChecks:
    """Warnings about the HTML templates a step reads: ``<html>`` without ``lang``, ``<img>``
    without ``alt``, link text that says nothing out of context. Each file is read once."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._done: set[Path] = set()
        self._twins: set[str] = set()

    def of(self, template: str) -> list[ConfigError]:
        if not self.renderer.exists(template):
            return []
        try:
            files = self.renderer.files_of(template)
        except Exception:  # a template that cannot be read: said elsewhere
            return []
        problems = self._text_twin(template)
        for path in files:
            if path in self._done or not path.name.endswith(HTML_SUFFIX):
                continue
            self._done.add(path)
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # said elsewhere
            shown = self.renderer.display(str(path))
            problems += [ConfigError(message, path=shown, line=line, warning=True)
                         for line, message in html_warnings(source)]
        return problems

    def _text_twin(self, template: str) -> list[ConfigError]:
        """An HTML body without a ``.txt.j2`` twin needs words enough (its own, not its
        layout's) for the plain-text part made from it to say something."""
        if self.renderer.has_text(template) or template in self._twins:
            return []
        self._twins.add(template)
        try:
            source, filename, _ = self.renderer.env.loader.get_source(  # type: ignore[union-attr]
                self.renderer.env, f"{template}{HTML_SUFFIX}")
        except Exception:  # a template that cannot be read: said elsewhere
            return []
        words = visible_words(source)
        if words >= MIN_TEXT_WORDS:
            return []
        return [ConfigError(f"no text twin, and only {words} word{'s' * (words != 1)} of text "
                            "to make the plain-text part from: write "
                            f"templates/{template}{TEXT_SUFFIX}",
                            path=self.renderer.display(filename or template), line=1,
                            warning=True)]


def visible_words(source: str) -> int:
    """Words of visible text in a template's HTML: each ``{{ value }}`` one word, statements,
    comments, tags, styles and scripts none."""
    masked = _JINJA.sub(lambda m: " x " if m.group().startswith("{{") else " ", source)
    parser = _TextReader()
    parser.feed(masked)
    parser.close()
    return len(_WORD.findall(" ".join(parser.parts)))


class _TextReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("style", "script", "head", "title")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "script", "head", "title") and self._hidden > 0

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_warnings(source: str) -> list[tuple[int, str]]:
    """(line, message) of each problem of a template's HTML (its Jinja masked out, lines kept)."""
    masked = _JINJA.sub(lambda m: re.sub(r"[^\n]", "x", m.group()), source)
    parser = _HtmlReader()
    parser.feed(masked)
    parser.close()
    return parser.found


class _HtmlReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._link: tuple[int, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        line = self.getpos()[0]
        if tag == "html" and "lang" not in names:
            self.found.append((line, '<html> has no lang: add lang="en-GB" (or the language '
                               "of the message), so that screen readers read it right"))
        elif tag == "img" and "alt" not in names:
            self.found.append((line, '<img> has no alt text: add alt="what it shows" (alt="" '
                               "for a decoration)"))
        elif tag == "a":
            self._link = (line, [])

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._link[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            line, parts = self._link
            text = " ".join("".join(parts).split())
            if " ".join(re.findall(r"[a-z']+", text.lower())) in VAGUE_LINKS:
                self.found.append((line, f"link text '{text}' says nothing out of context: say "
                                   "where it goes (like 'the workshop programme')"))
            self._link = None
