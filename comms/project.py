"""A comms project: campaigns/, templates/, schedules/, stakeholders/, pairs/ found by
convention."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import _yaml
from .audience import Directory, read_directory
from .campaign import Campaign, check_references, load_campaign
from .errors import ConfigError, ConfigErrors, NotFound, Refused, suggestion
from .pairs import Rounds, read_rounds
from .render import Renderer
from .schedule import Schedule, load_schedule

STAKEHOLDER_SUFFIXES = (".csv", ".yaml", ".yml")
NOT_IN_DIRECTORY = "is not in the directory (stakeholders/)"  # how pairs.py says so


@dataclass
class Project:
    """Everything read from a project's files, with every problem found (nothing raised)."""

    root: Path
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    sources: dict[str, _yaml.Located] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    directory: Directory = field(default_factory=Directory)
    rounds: Rounds = field(default_factory=Rounds)  # pairs/ROUND.csv
    schedule_files: dict[str, Path] = field(default_factory=dict)  # by schedule id
    problems: list[ConfigError] = field(default_factory=list)
    renderer: Renderer = field(init=False)

    def __post_init__(self) -> None:
        self.renderer = Renderer(self.root / "templates")

    @property
    def errors(self) -> list[ConfigError]:
        return [p for p in self.problems if not p.warning]

    @property
    def stakeholder_files(self) -> list[Path]:
        folder = self.root / "stakeholders"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in STAKEHOLDER_SUFFIXES)

    def campaign(self, campaign_id: str) -> Campaign:
        try:
            return self.campaigns[campaign_id]
        except KeyError:
            known = ", ".join(sorted(self.campaigns)) or "none"
            raise NotFound(f"unknown campaign '{campaign_id}' (campaigns are: {known})"
                           + suggestion(campaign_id, self.campaigns)) from None

    def raise_errors(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


def load_project(root: Path) -> Project:
    """Read every file of the project at ``root``; problems are collected, not raised."""
    if not root.is_dir():
        raise Refused(f"no folder {root} (--project)")
    root = root.resolve()
    if not (root / "campaigns").is_dir():
        raise ConfigErrors([ConfigError(
            "not a comms project: no campaigns/ folder here (use --project DIR)", path=root)])
    project = Project(root)
    broken: set[str] = set()  # ids of schedules whose file has errors (said once, there)
    for path in _yaml_files(root / "schedules"):
        try:
            schedule, located = load_schedule(path, path.relative_to(root))
        except (ConfigError, _yaml.ValidationErrors) as exc:
            project.problems += _as_list(exc)
            broken |= {path.stem, *_raw_id(path, root)}
            continue
        if schedule.id in project.schedules:
            project.problems.append(located.error(("id",), f"duplicate schedule id '{schedule.id}'"))
        project.schedules[schedule.id] = schedule
        project.schedule_files[schedule.id] = path
    unloaded: set[str] = set()  # ids of campaigns whose file has errors (said once, there)
    for path in _yaml_files(root / "campaigns"):
        try:
            campaign, located = load_campaign(path, path.relative_to(root))
        except (ConfigError, _yaml.ValidationErrors) as exc:
            project.problems += _as_list(exc)
            unloaded |= {path.stem, *_raw_id(path, root)}
            continue
        if campaign.id in project.campaigns:
            first = project.sources[campaign.id].path
            project.problems.append(located.error(
                ("id",), f"duplicate campaign id '{campaign.id}' (also in {first})"))
            continue
        project.campaigns[campaign.id] = campaign
        project.sources[campaign.id] = located
        project.problems += check_references(
            campaign, located, schedules=project.schedules.keys() | broken,
            template_exists=project.renderer.exists)
    project.directory = read_directory(project.stakeholder_files, root)
    project.problems += project.directory.problems
    project.problems += _empty(project)
    project.rounds = read_rounds(root, project.directory.people)
    project.problems += _not_follow_ons(project.rounds.problems, project.directory)
    for campaign_id, campaign in project.campaigns.items():
        for i, step in enumerate(campaign.steps):
            for j, name in enumerate(step.report.campaigns if step.report else []):
                if name not in project.campaigns and name not in unloaded:
                    known = ", ".join(sorted(project.campaigns))
                    project.problems.append(project.sources[campaign_id].error(
                        ("steps", i, "report", "campaigns", j),
                        f"unknown campaign '{name}' (campaigns are: {known})"
                        + suggestion(name, project.campaigns)))
            if step.pairs is not None and step.pairs not in project.rounds.pairs:
                known = ", ".join(sorted(project.rounds.pairs)) or "none"
                project.problems.append(project.sources[campaign_id].error(
                    ("steps", i, "pairs"), f"unknown round of pairs '{step.pairs}' (expected "
                    f"pairs/{step.pairs}.csv; rounds are: {known})"))
    return project


def _not_follow_ons(pairs: list[ConfigError], directory: Directory) -> list[ConfigError]:
    """The problems of pairs/ without "not in the directory" while the directory has errors
    of its own: people of rows (or files) with errors are not read, so are not in it."""
    if not any(not p.warning for p in directory.problems):
        return pairs
    return [p for p in pairs if not p.message.endswith(NOT_IN_DIRECTORY)]


def _empty(project: Project) -> list[ConfigError]:
    """Warnings for a project with nothing yet to send, or nobody to send it to."""
    found = []
    if not _yaml_files(project.root / "campaigns"):
        found.append(ConfigError("no campaign files yet (campaigns/*.yaml)", path="campaigns/",
                                 warning=True))
    if not project.stakeholder_files:
        found.append(ConfigError("no stakeholders yet (stakeholders/*.csv or *.yaml)",
                                 path="stakeholders/", warning=True))
    return found


def _raw_id(path: Path, root: Path) -> list[str]:
    """The ``id`` a file that failed to validate gives itself, if it can be read at all."""
    try:
        data = _yaml.load(path, path.relative_to(root)).data
    except ConfigError:
        return []
    return [data["id"]] if isinstance(data, dict) and isinstance(data.get("id"), str) else []


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))


def _as_list(exc: ConfigError | _yaml.ValidationErrors) -> list[ConfigError]:
    return exc.errors if isinstance(exc, _yaml.ValidationErrors) else [exc]
