"""Two-person sign-off. With ``require_approval`` (comms.toml), a campaign goes only once
someone has approved it with ``comms approve`` — and only as it was then: the approval holds a
fingerprint of the campaign file, every template its steps read and its schedule, and a change
to any of them needs a new approval. In a git repository the approver must not be the author of
the last commit touching those files."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ._types import email_key, normalise_email
from .campaign import Campaign
from .errors import NotFound, Refused
from .store import approvals

if TYPE_CHECKING:
    from .app import App
    from .project import Project


class NotApproved(Refused):
    """A campaign that needs an approval it does not have (or had, for other files)."""


def files_of(project: Project, campaign: Campaign) -> list[Path]:
    """What an approval covers: the campaign file, its steps' templates (and what they extend
    or include), its schedule — as paths relative to the project."""
    root = project.root
    found = {root / project.sources[campaign.id].path}
    for step in campaign.steps:
        found.update(p for p in project.renderer.files_of(step.template)
                     if p.resolve().is_relative_to(root))
    if campaign.schedule and campaign.schedule in project.schedule_files:
        found.add(project.schedule_files[campaign.schedule])
    return sorted(p.resolve().relative_to(root) for p in found)


def fingerprint(project: Project, campaign: Campaign) -> dict[str, str]:
    return {str(path): hashlib.sha256((project.root / path).read_bytes()).hexdigest()
            for path in files_of(project, campaign)}


def approve(app: App, campaign: Campaign, by: str) -> dict[str, str]:
    """Record ``by``'s approval of the campaign as its files are now."""
    try:
        approver = normalise_email(by)
    except ValueError as exc:
        raise NotFound(f"--by: {exc}") from None
    allowed = [email_key(a) for a in app.settings.approvers]
    if allowed and email_key(approver) not in allowed:
        raise NotApproved(f"{approver} is not an approver (approvers: "
                          f"{', '.join(app.settings.approvers)})")
    files = fingerprint(app.project, campaign)
    author = last_author(app.project.root, list(files))
    if author is not None and email_key(author) == email_key(approver):
        raise NotApproved(f"{approver} made the last change to {campaign.id}'s files: another "
                          "person must approve it")
    with app.store.write() as conn:
        approvals.put(conn, campaign.id, approver, app.clock.now(), files)
    return files


def problems(app: App, campaign: Campaign) -> list[str]:
    """Why the campaign may not be sent now (nothing when approval is not required)."""
    if not app.settings.require_approval:
        return []
    with app.store.read() as conn:
        held = approvals.get(conn, campaign.id)
    if held is None:
        return [f"{campaign.id} is not approved: a second person runs `comms approve "
                f"{campaign.id} --by EMAIL` (comms.toml: require_approval)"]
    now = fingerprint(app.project, campaign)
    changed = sorted(set(now.items()) ^ set(held["files"].items()))
    if changed:
        names = sorted({path for path, _ in changed})
        return [f"{campaign.id} changed since {held['approver']} approved it: "
                f"{', '.join(names)} (approve it again)"]
    return []


def last_author(root: Path, files: list[str]) -> str | None:
    """The author's address of the last commit touching these files (None outside git)."""
    try:
        done = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%ae", "--", *files],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    author = done.stdout.strip()
    return author if done.returncode == 0 and author else None
