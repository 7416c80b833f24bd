"""Messages shared by the transport tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any, TypeVar

from comms.transports.base import Address, CalendarPart, Message

T = TypeVar("T")
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


class OnALoop:
    """A transport's async sender (what the dispatcher's event loop uses) behind a blocking
    ``send``, on a loop of its own thread: the transport tests run through both."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.name = transport.name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.sender = self.run(self._open())

    async def _open(self) -> Any:
        return self.transport.open_async()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def send(self, message: Message) -> str:
        return self.run(self.sender.send(message))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.run(self.sender.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
