"""Messages shared by the transport tests."""

from __future__ import annotations

from dataclasses import replace

from comms.transports.base import Address, CalendarPart, Message

API_KEY = "SG.unit-test-key.Zk9xQ2VjcmV0"
ICS = (b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:-//comms//EN\r\nVERSION:2.0\r\n"
       b"BEGIN:VEVENT\r\nUID:evt-1@example.org\r\nSUMMARY:Steering group\r\n"
       b"END:VEVENT\r\nEND:VCALENDAR\r\n")


def make_message(n: int = 1, **changes: object) -> Message:
    message = Message(
        send_id=f"send-{n}",
        message_id=f"<send-{n}@comms.example.org>",
        sender=Address(email="office@programme.example.org", name="Programme Office"),
        to=Address(email=f"person{n}@example.org", name="Siobhán O'Connor"),
        subject="Réunion – steering group",
        text="Dear Siobhán,\nSee you there.\n",
        html="<p>Dear Siobhán,</p><p>See you there.</p>\n",
        reply_to="replies@programme.example.org",
        headers={"List-Unsubscribe": f"<https://comms.example.org/u/{n}>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    return replace(message, **changes)  # type: ignore[arg-type]


def invite(n: int = 1, method: str = "REQUEST") -> Message:
    return make_message(n, calendar=CalendarPart(method=method, ics=ICS))
