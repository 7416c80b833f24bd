"""One-click answers other than RSVPs: a mentoring pair's check-in (met, not yet) and a rating
after an event. As with RSVP links, opening a link (GET) only shows a confirmation page —
security scanners fetch every link — and pressing its button (POST) records the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CommsError
from ..responses import RATINGS
from ..store import feedback, sends
from ..store import pairs as stored_pairs
from ..tokens import InvalidToken

if TYPE_CHECKING:
    from ..app import App
    from ..campaign import Campaign, Step

PAIR_ANSWERS = {"met": "met", "not_yet": "not yet"}  # what a link records: shown as
MAX_COMMENT = 2_000


class NotAnswerable(CommsError):
    """A link whose send, step, pair or event is gone."""


@dataclass(frozen=True, slots=True)
class Question:
    """What a link asks: a pair's check-in or a rating of an event."""

    what: str  # pair | rating
    value: str  # met | not_yet; 1-5 or "-" (no rating chosen)
    campaign: Campaign
    step: Step
    send_id: int
    stakeholder_id: int
    first_name: str
    pair_id: int | None = None
    held: dict[str, Any] | None = None  # the answer given so far, if any

    @property
    def event(self) -> Any:
        return self.campaign.event(self.step.event or "")


class Checkins:
    def __init__(self, app: App) -> None:
        self.app = app

    def question(self, token: str) -> Question:
        """What the link's token asks (InvalidToken: forged; NotAnswerable: gone)."""
        uid, what, value = self.app.tokens.read_answer(token)
        if what == "pair" and value not in PAIR_ANSWERS or what == "rating" and value not in (
                "-", *map(str, RATINGS)) or what not in ("pair", "rating"):
            raise InvalidToken("this link is not valid")
        store = self.app.store
        with store.read() as conn:
            send = sends.by_uid(conn, uid)
            if send is None:
                raise NotAnswerable("this link is not known here")
            campaign = self.app.project.campaigns.get(send.campaign)
            step = campaign.step(send.step) if campaign else None
            if campaign is None or step is None:
                raise NotAnswerable("this link is for a step that no longer exists")
            if what == "pair":
                pair = stored_pairs.of_send(conn, send.id, step.pairs) if step.pairs else None
                if pair is None or not pair["active"]:
                    raise NotAnswerable("this pair is no longer in its round")
                held = {"answer": pair["answer"]} if pair["answer"] else None
                return Question(what, value, campaign, step, send.id, send.stakeholder_id,
                                send.first_name, pair_id=pair["id"], held=held)
            if step.kind != "feedback" or campaign.event(step.event or "") is None:
                raise NotAnswerable("this link is for an event that no longer exists")
            held = feedback.held(conn, campaign.id, step.event or "", send.stakeholder_id)
        return Question(what, value, campaign, step, send.id, send.stakeholder_id,
                        send.first_name, held=held)

    def answer(self, question: Question, *, rating: int | None = None,
               comment: str = "") -> None:
        """Record the answer (a later one replaces it)."""
        now = self.app.clock.now()
        with self.app.store.write() as conn:
            if question.what == "pair":
                assert question.pair_id is not None
                stored_pairs.answer(conn, question.pair_id, question.value,
                                    send_id=question.send_id, now=now)
                return
            assert rating is not None and rating in RATINGS
            feedback.record(conn, campaign=question.campaign.id, event=question.step.event or "",
                            stakeholder_id=question.stakeholder_id, rating=rating,
                            comment=comment[:MAX_COMMENT], send_id=question.send_id, now=now)
