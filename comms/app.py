"""Wiring: settings + project + store + composer + transport, built once per command or process."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .campaign import Campaign, Event, Tracking
from .clock import Clock, ShiftedClock, SystemClock
from .dispatch import Dispatcher, Policy, Progress
from .keys import Keys
from .message import Composer
from .project import Project, load_project
from .settings import Settings, load_settings
from .store import Store, campaigns, pairs
from .store.stakeholders import SyncResult, fingerprint, sync
from .tokens import Tokens
from .tracking.rsvp import Rsvps
from .transports.base import Transport


class App:
    """One project as a running application. Library calls take what they need from here."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 transport: Transport | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or _clock(settings)
        self._transport = transport

    @classmethod
    def for_project(cls, project_dir: Path | str | None = None, **flags: Any) -> App:
        return cls(load_settings(project_dir, **flags))

    @cached_property
    def project(self) -> Project:
        return load_project(self.settings.project_dir)

    @cached_property
    def keys(self) -> Keys:
        """``COMMS_SECRET_KEY`` (and its fallbacks), else a key generated into a file of mode
        600 beside the store (the outbox default; ``comms send`` with a real transport refuses
        to go without a key of its own)."""
        s = self.settings
        if s.secret_key is not None:
            older = s.secret_key_fallbacks.get_secret_value() if s.secret_key_fallbacks else ""
            return Keys(s.secret_key.get_secret_value(),
                        tuple(k.strip() for k in older.split(",") if k.strip()))
        return Keys.generated_in(s.key_file)

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.resolved_database_url, keys=self.keys)

    @cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.keys.secret, self.settings.base_url, fallbacks=self.keys.fallbacks)

    @cached_property
    def composer(self) -> Composer:
        from .pack import build_pack

        tracking = Tracking(opens=self.settings.track_opens, clicks=self.settings.track_clicks)
        return Composer(self.project.renderer, self.tokens, timezone=self.settings.timezone,
                        packs=lambda step: build_pack(self, step), tracking=tracking)

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            from .transports import make_transport

            self._transport = make_transport(self.settings)
        return self._transport

    @property
    def resolves_uncertain(self) -> bool:
        """Whether provider events settle uncertain sends (the SendGrid event webhook is set up),
        so one with no event after ``COMMS_UNCERTAIN_RESOLVE_MINUTES`` is sent again once."""
        s = self.settings
        return s.transport == "sendgrid" and bool(s.sendgrid_webhook_public_key
                                                  or s.sendgrid_webhook_insecure)

    def replace_project(self, project: Project) -> None:
        """Swap in a freshly loaded project (templates compile anew on first use)."""
        self.__dict__["project"] = project
        self.__dict__.pop("composer", None)

    def sync_directory(self) -> SyncResult:
        """Mirror stakeholders/ into the store (one query when the files have not changed)."""
        files = self.project.stakeholder_files
        result = sync(self.store, self.project.directory.people, now=self.clock.now(),
                      fingerprint_key="directory:stakeholders",
                      fingerprint_value=fingerprint(files))
        with self.store.write() as conn:
            pairs.sync(conn, self.project.rounds.pairs, now=self.clock.now())
        return result

    def dispatcher(self, *, max_per_minute: int | None = None, rate_name: str = "schedule",
                   progress: Progress | None = None) -> Dispatcher:
        """A dispatcher; ``max_per_minute`` is the bucket ``rate_name``'s, shared by every
        process on the store (one per schedule)."""
        concurrency = 1 if self.settings.transport == "outbox" else self.settings.concurrency
        policy = Policy(concurrency=concurrency, max_attempts=self.settings.max_attempts,
                        max_per_minute=max_per_minute, rate_name=rate_name)
        return Dispatcher(self.store, self.transport, self.composer, clock=self.clock,
                          policy=policy, progress=progress)

    def notify(self, campaign: Campaign, event: Event, kind: str,
               stakeholder_ids: list[int]) -> None:
        """Tell people their RSVP put them on the waitlist, or that a seat is theirs now (held
        back while the campaign is paused)."""
        with self.store.read() as conn:
            paused = campaigns.paused_at(conn, campaign.id) is not None
        self.dispatcher().notify(campaign, event, kind, stakeholder_ids, paused=paused)

    @cached_property
    def rsvps(self) -> Rsvps:
        """Answers by link and by calendar reply, telling people what they did by email."""
        return Rsvps(store=self.store, clock=self.clock, tokens=self.tokens,
                     campaigns=lambda: self.project.campaigns, timezone=self.settings.timezone,
                     notifier=self.notify)

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if "store" in self.__dict__:
            self.store.dispose()


def _clock(settings: Settings) -> Clock:
    """The system clock, or one set to ``COMMS_NOW`` (a naive time is in the project's zone)."""
    if settings.now is None:
        return SystemClock()
    start = settings.now
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(settings.timezone))
    return ShiftedClock(start)
