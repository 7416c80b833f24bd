"""What the configured transport lets comms see, so a figure it cannot see reads "not tracked",
never a misleading 0.

Replies (read from inbound mail), unsubscribes (comms' own link and List-Unsubscribe) and answers
to invitations (comms' RSVP pages, calendar replies, answers entered by hand) are recorded by comms
itself, whatever sends the mail. Deliveries, bounces, opens and clicks are seen only by the mail
provider: comms hears of them from SendGrid's event webhook, and from nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .metrics import COUNTS

if TYPE_CHECKING:
    from ..campaign import Tracking
    from ..settings import Settings

#: Figures only a provider's event feed can report.
PROVIDER_SEEN = ("delivered", "bounced", "opened", "clicked")
#: Figures comms records itself, whatever the transport.
SELF_SEEN = ("audience", "sent", "replied", "unsubscribed", "responded")

_BECAUSE = {
    "outbox": "the outbox transport writes messages to files and nothing reports back, so "
              "comms cannot see deliveries, bounces, opens or clicks",
    "smtp": "an SMTP server accepts messages but reports no deliveries, bounces, opens or clicks "
            "back to comms",
    "sandbox": "SendGrid's sandbox mode (COMMS_SENDGRID_SANDBOX) delivers nothing, so there are "
               "no deliveries, bounces, opens or clicks to see",
    "no_webhook": "SendGrid's event webhook is not set up (COMMS_SENDGRID_WEBHOOK_PUBLIC_KEY), "
                  "so its delivery, bounce, open and click events do not reach comms",
}
_CLICKS_UNSEEN = ("; “responded” counts replies and answers to invitations, not clicks on other "
                  "links")


@dataclass(frozen=True, slots=True)
class Observed:
    """Which figures the report can count, and why the others read "not tracked"."""

    transport: str
    tracked: dict[str, bool]
    because: str | None  # None when everything is tracked

    @property
    def untracked(self) -> tuple[str, ...]:
        return tuple(k for k, seen in self.tracked.items() if not seen)

    @property
    def rates_over(self) -> str:
        """The denominator of the open, click, reply, unsubscribe and response rates: delivered
        when deliveries are seen, else sent (every message sent presumed to have arrived)."""
        return "delivered" if self.tracked["delivered"] else "sent"

    def sees(self, figure: str) -> bool:
        return self.tracked.get(figure, True)


def for_campaign(seen: Observed, tracking: Tracking) -> Observed:
    """What the report can count of one campaign: opens and clicks only where the provider
    is seen and the campaign lets it track them (``tracking``, off by default)."""
    off = [k for k, on in (("opened", tracking.opens), ("clicked", tracking.clicks))
           if not on and seen.tracked[k]]
    if not off:
        return seen
    because = (f"the campaign does not track {' or '.join(w.removesuffix('ed') + 's' for w in off)}"
               " (its tracking key, or COMMS_TRACK_OPENS / COMMS_TRACK_CLICKS: off by default)")
    return Observed(transport=seen.transport,
                    tracked={k: v and k not in off for k, v in seen.tracked.items()},
                    because=f"{seen.because}; {because}" if seen.because else because)


def observed(settings: Settings) -> Observed:
    """What ``settings.transport`` (and its settings) lets the report count."""
    reason = _reason(settings)
    seen = reason is None
    tracked = {k: seen or k in SELF_SEEN for k in COUNTS}
    return Observed(transport=settings.transport, tracked=tracked,
                    because=None if reason is None else reason + _CLICKS_UNSEEN)


def _reason(settings: Settings) -> str | None:
    if settings.transport != "sendgrid":
        return _BECAUSE[settings.transport]
    if settings.sendgrid_sandbox:
        return _BECAUSE["sandbox"]
    if not (settings.sendgrid_webhook_public_key or settings.sendgrid_webhook_insecure):
        return _BECAUSE["no_webhook"]
    return None
