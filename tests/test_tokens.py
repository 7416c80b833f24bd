"""Signed link tokens: tamper-proof, one key per purpose, expiring RSVPs, no personal data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from comms.tokens import InvalidToken, Tokens

UID = "0123456789abcdef0123456789abcdef"
END = datetime(2027, 1, 14, 16, 30, tzinfo=UTC)


def token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_unsubscribe_round_trip_and_url() -> None:
    tokens = Tokens("secret", "https://comms.example/")
    url = tokens.unsubscribe_url(UID)
    assert url.startswith("https://comms.example/u/")
    assert tokens.read_unsubscribe(token(url)) == UID


@pytest.mark.parametrize("position", [0, 10, 31, 33, -1])
def test_any_flipped_character_is_refused(position: int) -> None:
    tokens = Tokens("secret", "https://comms.example")
    raw = token(tokens.unsubscribe_url(UID))
    flipped = raw[:position] + ("A" if raw[position] != "A" else "B") + raw[position + 1:]
    if position == -1:
        flipped = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    with pytest.raises(InvalidToken):
        tokens.read_unsubscribe(flipped)


def test_other_key_and_other_purpose_refused() -> None:
    mine, theirs = Tokens("secret", "https://a.example"), Tokens("other", "https://a.example")
    unsubscribe = token(mine.unsubscribe_url(UID))
    with pytest.raises(InvalidToken):
        theirs.read_unsubscribe(unsubscribe)
    with pytest.raises(InvalidToken):
        mine.read_rsvp(unsubscribe, END - timedelta(days=1))
    rsvp = token(mine.rsvp_url(UID, "accepted", END))
    with pytest.raises(InvalidToken):
        mine.read_unsubscribe(rsvp)


def test_rsvp_answers_and_expiry() -> None:
    tokens = Tokens("secret", "https://a.example")
    for answer in ("accepted", "declined", "tentative"):
        raw = token(tokens.rsvp_url(UID, answer, END))  # type: ignore[arg-type]
        assert tokens.read_rsvp(raw, END - timedelta(minutes=1)) == (UID, answer)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.read_rsvp(token(tokens.rsvp_url(UID, "accepted", END)), END + timedelta(seconds=1))


def test_tokens_hold_no_personal_data() -> None:
    tokens = Tokens("secret", "https://a.example")
    url = tokens.rsvp_url(UID, "declined", END) + tokens.unsubscribe_url(UID)
    assert "@" not in url and "%40" not in url
