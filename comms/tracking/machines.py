"""Clicks that machines made: security scanners (Microsoft Defender Safe Links, Mimecast,
Proofpoint) fetch every link of a message, often seconds after delivery. Each click of a
message is classified from all of the message's stored events, so arrival order and duplicates
change nothing; the reason is kept beside the flag, and nothing is dropped.

A click is a machine's when (the first rule that holds is its reason):

- ``honeypot``: it is on the message's hidden link, or within ``HONEYPOT_WINDOW`` of a click on
  it (``tracking: {honeypot: true}``);
- ``scanner user agent``: its user agent or provider hint names a known scanner;
- ``within N s of delivery``: it came that soon after the message was delivered;
- ``several links within a second``: another link of the message was clicked within a second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

HONEYPOT_WINDOW = timedelta(seconds=10)
BURST = timedelta(seconds=1)
SCANNERS = re.compile(
    r"mimecast|proofpoint|barracuda|safelinks|safe links|defender|microsoft office|"
    r"bingpreview|symantec|messagelabs|trend ?micro|forcepoint|fireeye|sophos|cisco|ironport|"
    r"python-requests|python-urllib|go-http-client|curl/|wget/|headlesschrome|phantomjs",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Click:
    id: int  # the response row
    at: datetime
    url: str
    raw: str  # the provider's payload (its user agent)


def classify(clicks: Sequence[Click], *, delivered_at: datetime | None, within: float,
             honeypot: str | None) -> dict[int, str | None]:
    """Per click row: why it is a machine's, or None for a person's."""
    traps = [c.at for c in clicks if honeypot and c.url.startswith(honeypot)]
    soon = timedelta(seconds=within)
    out: dict[int, str | None] = {}
    for click in clicks:
        reason = None
        if any(abs(click.at - at) <= HONEYPOT_WINDOW for at in traps):
            reason = "honeypot"
        elif SCANNERS.search(_agent(click.raw)):
            reason = "scanner user agent"
        elif delivered_at is not None and click.at - delivered_at <= soon:
            reason = f"within {within:g} s of delivery"
        elif any(other.url != click.url and abs(other.at - click.at) <= BURST
                 for other in clicks):
            reason = "several links within a second"
        out[click.id] = reason
    return out


def _agent(raw: str) -> str:
    """The user agent and any provider hint in a click's payload."""
    try:
        event = json.loads(raw) if raw else {}
    except ValueError:
        return ""
    if not isinstance(event, dict):
        return ""
    parts = [event.get(k) for k in ("useragent", "user_agent", "ip_pool", "sg_scanner")]
    return " ".join(p for p in parts if isinstance(p, str))
