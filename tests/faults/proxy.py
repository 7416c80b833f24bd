"""A deterministic fault-injection proxy between a test client and a local server.

The proxy sits in front of the SendGrid-contract HTTP sink or the aiosmtpd SMTP sink and, for each
*unit* of work, asks a plan which network fault to inject at a protocol-meaningful point::

    with SendGridSink(api_key=KEY) as sink, FaultProxy(
            "127.0.0.1", urlsplit(sink.url).port, plan=at({2: RESET_AFTER})) as proxy:
        transport = SendGridTransport(KEY, host=proxy.url)
        ...                                    # unit 2 reaches the sink, its reply never comes back
        assert proxy.log[2].forwarded and not proxy.log[2].answered

    with SmtpSink() as sink, \\
            FaultProxy(sink.host, sink.port, "smtp", plan=every(3, DROP_REPLY)) as proxy:
        smtp = smtplib.SMTP(proxy.host, proxy.port)   # every third transaction loses its 250

A unit is one HTTP/1.1 request/response exchange (bodies framed by Content-Length; chunked
bodies and ``Expect: 100-continue`` are refused with a clear error) or one SMTP mail transaction
(MAIL FROM through the reply to the DATA body's final dot). The greeting, EHLO, AUTH, RSET, NOOP
and QUIT pass through untouched; STARTTLS is answered ``454`` (the proxy cannot see into TLS).

Units are numbered from 0 across all connections, in the order they begin (HTTP: the request
head arrived; SMTP: MAIL FROM arrived), and ``plan(n, info)`` is called once for each, at that
moment, on the proxy's thread (keep it quick: it holds up every connection). The proxy works in
lockstep, one unit at a time on each connection, so whatever the plan decided for a unit has
happened before that connection's next unit starts. A unit's record is final before the client
can see what happened to it. Once the client has seen the outcome (an error, a timeout, a
reply), ``proxy.log`` is already up to date, and so is the upstream's own log, because the proxy
waits for the upstream's reply before acting.

The proxy's log says which units were faulted. Only the upstream's own log says what was really
delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any, Literal

__all__ = [
    "DROP_REPLY", "HANG_AFTER", "HANG_BEFORE", "NONE", "RESET_AFTER", "RESET_BEFORE", "STATUS",
    "Fault", "FaultProxy", "FaultProxyError", "Kind", "Plan", "Schedule", "UnitInfo", "UnitRecord",
    "at", "combine", "every", "fraction",
]

LIMIT = 8 * 1024 * 1024  # the longest HTTP head or SMTP line the proxy buffers
CHUNK = 64 * 1024
LINGER = 2.0  # after a graceful close, how long to let the client close its side (seconds)


class Kind(enum.Enum):
    NONE = "none"
    RESET_BEFORE = "reset_before"
    RESET_AFTER = "reset_after"
    HANG_BEFORE = "hang_before"
    HANG_AFTER = "hang_after"
    DROP_REPLY = "drop_reply"
    STATUS = "status"


_AFTER = {Kind.RESET_AFTER, Kind.HANG_AFTER, Kind.DROP_REPLY}


@dataclass(frozen=True)
class Fault:
    """What to do to one unit. Use the constants and ``STATUS(...)`` rather than building these."""

    kind: Kind
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    def __repr__(self) -> str:
        return f"STATUS({self.status})" if self.kind is Kind.STATUS else self.kind.name

    __str__ = __repr__

    @property
    def forwards(self) -> bool:
        """Whether a unit with this fault is sent on to the upstream."""
        return self.kind is Kind.NONE or self.kind in _AFTER


NONE = Fault(Kind.NONE)
"""Pass the unit through."""
RESET_BEFORE = Fault(Kind.RESET_BEFORE)
"""Do not forward the unit. RST the client as soon as the unit starts."""
RESET_AFTER = Fault(Kind.RESET_AFTER)
"""Forward the whole unit and read the upstream's reply, then RST the client instead of replying."""
HANG_BEFORE = Fault(Kind.HANG_BEFORE)
"""Do not forward the unit. Keep the client connection open and silent until the client closes it."""
HANG_AFTER = Fault(Kind.HANG_AFTER)
"""Forward the unit and read the reply, then keep the client connection open and silent."""
DROP_REPLY = Fault(Kind.DROP_REPLY)
"""Forward the unit and read the reply, then close the client connection gracefully (FIN)."""


def STATUS(code: int, headers: Mapping[str, str] | None = None,
           body: bytes | str | None = None) -> Fault:
    """HTTP only: answer with ``code`` (and ``headers``) and forward nothing.

    Without ``body`` the answer carries a SendGrid-style ``{"errors": [...]}`` JSON body. The client
    connection is kept alive unless ``headers`` say ``Connection: close``.
    """
    if not 200 <= code <= 599:
        raise ValueError(f"STATUS needs a final status code (200-599), not {code}")
    data = body.encode() if isinstance(body, str) else body
    return Fault(Kind.STATUS, status=code, headers=tuple((headers or {}).items()), body=data)


@dataclass(frozen=True)
class UnitInfo:
    """What the plan is told about a unit when it starts."""

    protocol: str  # "http" or "smtp"
    connection: int  # the client connection carrying it: 1, 2, ... in the order they were accepted
    seq: int  # its index among the units on that connection, from 0
    method: str | None = None  # HTTP
    path: str | None = None  # HTTP: the request target
    headers: Mapping[str, str] = field(default_factory=dict)  # HTTP: lower-cased names
    mail_from: str | None = None  # SMTP: the reverse path (the RCPTs come later; see UnitRecord)


@dataclass(frozen=True)
class UnitRecord:
    """What happened to one unit.

    ``forwarded``: the whole unit (HTTP: the full request; SMTP: everything through the final dot)
    was written to the upstream. ``answered``: the proxy passed a reply for the unit to the
    client (the upstream's, or the injected ``STATUS``). ``reply``: the upstream's status code or
    SMTP reply code to the unit's final part, if one was read. ``outcome``: ``"open"`` while the
    unit is in progress, then ``"passed"``, ``"faulted"`` (the planned fault was applied),
    ``"aborted"`` (an SMTP transaction ended without a message: MAIL refused, RSET, QUIT),
    ``"client-closed"``, ``"upstream-closed"``, ``"stopped"`` or ``"error"``.
    """

    n: int
    fault: Fault
    info: UnitInfo
    forwarded: bool = False
    answered: bool = False
    reply: int | None = None
    rcpt_tos: tuple[str, ...] = ()  # SMTP: the recipients the upstream accepted
    outcome: str = "open"

    @property
    def connection(self) -> int:
        return self.info.connection

    @property
    def finished(self) -> bool:
        return self.outcome != "open"


Plan = Callable[[int, UnitInfo], Fault | Kind | None]
"""Called with each unit's number and info. Returns the fault (``None`` means ``NONE``)."""


class Schedule:
    """A plan that depends only on ``n``, so the units it faults can be listed up front."""

    def fault_for(self, n: int) -> Fault:
        raise NotImplementedError

    def __call__(self, n: int, info: UnitInfo | None = None) -> Fault:
        return self.fault_for(n)

    def selected(self, count: int) -> list[int]:
        """The units among the first ``count`` that this plan faults."""
        return [n for n in range(count) if self.fault_for(n).kind is not Kind.NONE]


class _Every(Schedule):
    def __init__(self, k: int, fault: Fault, start: int) -> None:
        if k < 1 or start < 0:
            raise ValueError("every() needs k >= 1 and start >= 0")
        self.k, self.fault, self.start = k, fault, start

    def fault_for(self, n: int) -> Fault:
        return self.fault if n >= self.start and (n - self.start) % self.k == 0 else NONE

    def __repr__(self) -> str:
        return f"every({self.k}, {self.fault!r}, start={self.start})"


class _At(Schedule):
    def __init__(self, faults: Mapping[int, Fault]) -> None:
        self.faults = dict(faults)

    def fault_for(self, n: int) -> Fault:
        return self.faults.get(n, NONE)

    def __repr__(self) -> str:
        return f"at({self.faults!r})"


class _Fraction(Schedule):
    def __init__(self, p: float, fault: Fault, seed: int | str) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError("fraction() needs 0 <= p <= 1")
        self.p, self.fault, self.seed = p, fault, seed
        self._random = random.Random(seed)
        self._draws: list[bool] = []
        self._lock = threading.Lock()

    def fault_for(self, n: int) -> Fault:
        with self._lock:  # draw in order of n, whatever order units are asked about
            while len(self._draws) <= n:
                self._draws.append(self._random.random() < self.p)
            return self.fault if self._draws[n] else NONE

    def __repr__(self) -> str:
        return f"fraction({self.p}, {self.fault!r}, seed={self.seed!r})"


class _Combined(Schedule):
    def __init__(self, plans: tuple[Plan, ...]) -> None:
        self.plans = plans

    def __call__(self, n: int, info: UnitInfo | None = None) -> Fault:
        if info is None:
            return self.fault_for(n)
        for plan in self.plans:
            fault = _as_fault(plan(n, info))
            if fault.kind is not Kind.NONE:
                return fault
        return NONE

    def fault_for(self, n: int) -> Fault:
        for plan in self.plans:
            fault = _schedule(plan).fault_for(n)
            if fault.kind is not Kind.NONE:
                return fault
        return NONE


def every(k: int, fault: Fault, start: int | None = None) -> Schedule:
    """Fault every k-th unit: n = start, start + k, ... (``start`` defaults to k - 1)."""
    return _Every(k, fault, k - 1 if start is None else start)


def at(faults: Mapping[int, Fault]) -> Schedule:
    """Fault exactly the units named: ``at({3: RESET_AFTER, 10: STATUS(503)})``."""
    return _At(faults)


def fraction(p: float, fault: Fault, seed: int | str = 0) -> Schedule:
    """Fault each unit with probability ``p``. The same seed picks the same units."""
    return _Fraction(p, fault, seed)


def combine(*plans: Plan) -> Schedule:
    """The first plan that faults a unit decides it."""
    return _Combined(plans)


def _schedule(plan: Plan) -> Schedule:
    if not isinstance(plan, Schedule):
        raise TypeError(f"{plan!r} depends on the unit's info; it cannot be listed up front")
    return plan


def _as_fault(value: object) -> Fault:
    if value is None:
        return NONE
    if isinstance(value, Fault):
        return value
    if isinstance(value, Kind) and value is not Kind.STATUS:
        return Fault(value)
    raise TypeError(f"a plan must return a Fault, not {value!r}")


class FaultProxyError(Exception):
    """The proxy met something it refuses or cannot do (a strict proxy raises these on exit)."""


class _ClientClosed(Exception):
    pass


class _UpstreamClosed(Exception):
    pass


class _Refusal(Exception):
    """A request or reply the proxy will not handle. It answers with ``code`` and closes."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Tracked(asyncio.StreamReaderProtocol):
    """A stream protocol whose transport the proxy can find and close at shutdown."""

    def __init__(self, registry: set[asyncio.BaseTransport], reader: asyncio.StreamReader,
                 loop: asyncio.AbstractEventLoop,
                 accepted: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                    Awaitable[None]] | None = None) -> None:
        super().__init__(reader, accepted, loop=loop)
        self._registry = registry
        self._tracked: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracked = transport
        self._registry.add(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tracked is not None:
            self._registry.discard(self._tracked)
        super().connection_lost(exc)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 (an ephemeral port) that injects the plan's faults.

    It runs an asyncio loop in one background thread. Use it as a context manager or call
    ``start()`` and ``stop()``. With ``strict`` (the default), leaving the ``with`` block raises
    ``FaultProxyError`` if the proxy refused something or the plan failed (see ``errors``).
    """

    def __init__(self, upstream_host: str, upstream_port: int,
                 protocol: Literal["http", "smtp"] = "http", plan: Plan | None = None, *,
                 strict: bool = True) -> None:
        if protocol not in ("http", "smtp"):
            raise ValueError(f"protocol must be 'http' or 'smtp', not {protocol!r}")
        self.upstream_host = upstream_host
        self.upstream_port = int(upstream_port)
        self.protocol = protocol
        self.plan = plan
        self.strict = strict
        self.host = "127.0.0.1"
        self.port = 0
        self._cond = threading.Condition(threading.RLock())
        self._records: list[UnitRecord] = []
        self._errors: list[str] = []
        self._connections = 0
        self._active = 0
        self._upstream_failures = 0
        # proxy thread only:
        self._next_n = 0
        self._upstream: tuple[str, int] = (upstream_host, self.upstream_port)
        self._transports: set[asyncio.BaseTransport] = set()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # life cycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        if self._thread is not None:
            raise RuntimeError("FaultProxy already started")
        address = socket.getaddrinfo(self.upstream_host, self.upstream_port,
                                     type=socket.SOCK_STREAM)[0][4]
        self._upstream = (str(address[0]), int(address[1]))  # numeric: no resolver threads later
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        loop = asyncio.new_event_loop()
        try:
            listener.bind((self.host, 0))
            listener.setblocking(False)
            self.port = int(listener.getsockname()[1])
            self._server = loop.run_until_complete(loop.create_server(
                lambda: _Tracked(self._transports, asyncio.StreamReader(LIMIT, loop), loop,
                                 self._accept),
                sock=listener, backlog=256))
        except BaseException:
            listener.close()
            loop.close()
            raise
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name=f"FaultProxy-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection (hung ones too), and end the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("FaultProxy.stop() called from the proxy's own thread")
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if thread.is_alive():
            raise FaultProxyError("the proxy thread did not stop within 10 s")
        self._thread = None
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if self.strict and exc_type is None and self.errors:
            raise FaultProxyError("; ".join(self.errors))

    def __repr__(self) -> str:
        return (f"FaultProxy({self.protocol} {self.host}:{self.port} -> "
                f"{self.upstream_host}:{self.upstream_port}, plan={self.plan!r})")

    # bookkeeping, safe from any thread

    @property
    def log(self) -> list[UnitRecord]:
        """One record per unit, in order of n (a snapshot)."""
        with self._cond:
            return list(self._records)

    def record(self, n: int) -> UnitRecord:
        with self._cond:
            return self._records[n]

    @property
    def errors(self) -> list[str]:
        with self._cond:
            return list(self._errors)

    def clear_errors(self) -> None:
        with self._cond:
            self._errors.clear()

    @property
    def units(self) -> int:
        with self._cond:
            return len(self._records)

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        with self._cond:
            return self._connections

    @property
    def active(self) -> int:
        """Client connections still open."""
        with self._cond:
            return self._active

    @property
    def counts(self) -> Counter[str]:
        """Units by the fault the plan chose: ``{"NONE": 37, "RESET_AFTER": 3, "STATUS(429)": 1}``."""
        with self._cond:
            return Counter(str(r.fault) for r in self._records)

    @property
    def faulted(self) -> list[int]:
        """The n of every unit whose fault was applied (``outcome == "faulted"``).

        A planned fault can go unapplied: an SMTP transaction that ends in RSET never reaches its
        final dot, and a client may give up before the unit's reply.
        """
        with self._cond:
            return [r.n for r in self._records if r.outcome == "faulted"]

    def stats(self) -> dict[str, int]:
        with self._cond:
            records = self._records
            return {"connections": self._connections, "active": self._active,
                    "units": len(records),
                    "forwarded": sum(r.forwarded for r in records),
                    "answered": sum(r.answered for r in records),
                    "faulted": sum(r.outcome == "faulted" for r in records),
                    "upstream_failures": self._upstream_failures, "errors": len(self._errors)}

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait (bounded) until ``predicate()`` holds. It is re-checked on every change of state."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_finished(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` units began and every unit begun so far is finished."""
        return self.wait(lambda: len(self._records) >= count
                         and all(r.finished for r in self._records), timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no client connection is open."""
        return self.wait(lambda: self._active == 0, timeout)

    # called on the proxy's thread

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    async def _shutdown(self) -> None:
        self._stopping = True
        assert self._server is not None
        self._server.close()
        current = asyncio.current_task()
        for _ in range(100):  # connections accepted in the last moments may need a few rounds
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            if not tasks and not self._transports:
                break
            for task in tasks:
                task.cancel()
            for transport in list(self._transports):
                if isinstance(transport, asyncio.WriteTransport):
                    transport.abort()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)  # one turn of the loop delivers connection_lost
        await self._server.wait_closed()

    def _error(self, message: str) -> None:
        with self._cond:
            self._errors.append(message)
            self._cond.notify_all()

    def _begin(self, info: UnitInfo) -> tuple[int, Fault]:
        n = self._next_n
        self._next_n += 1
        fault = NONE
        plan = self.plan
        if plan is not None:
            try:
                fault = _as_fault(plan(n, info))
            except Exception as exc:
                self._error(f"plan({n}) failed: {exc!r}; unit {n} passed through")
            if fault.kind is Kind.STATUS and self.protocol != "http":
                self._error(f"plan({n}) returned {fault!r}, which is HTTP only; unit {n} passed "
                            "through")
                fault = NONE
        with self._cond:
            self._records.append(UnitRecord(n=n, fault=fault, info=info))
            self._cond.notify_all()
        return n, fault

    def _update(self, n: int, **changes: Any) -> None:
        with self._cond:
            self._records[n] = replace(self._records[n], **changes)
            self._cond.notify_all()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(LIMIT, loop)
        protocol = _Tracked(self._transports, reader, loop)
        transport, _ = await loop.create_connection(lambda: protocol, *self._upstream)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._cond:
            self._connections += 1
            self._active += 1
            number = self._connections
            self._cond.notify_all()
        conn = _Connection(self, number, reader, writer)
        try:
            await self._serve(conn)
        except asyncio.CancelledError:
            # stop() cancelled it, perhaps while it was closing. End quietly: 3.11's stream
            # callback cannot take a cancelled task, and _shutdown aborts what is left open.
            conn.end("stopped")
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    async def _serve(self, conn: _Connection) -> None:
        number = conn.number
        try:
            await conn.run()
        except _ClientClosed:
            conn.end("client-closed")
        except _UpstreamClosed:
            conn.end("upstream-closed")
            await conn.fin_client()
        except _Refusal as refusal:
            self._error(f"connection {number}: {refusal.message}")
            conn.end("error")
            await conn.refuse(refusal)
        except Exception as exc:  # a bug in the proxy: make it loud, not a hang
            self._error(f"connection {number}: {exc!r}")
            conn.end("error")
        finally:
            await conn.close()


class _Connection:
    """One client connection and its own upstream connection, handled one unit at a time."""

    def __init__(self, proxy: FaultProxy, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.number = number
        self.creader = reader
        self.cwriter = writer
        self._ureader: asyncio.StreamReader | None = None
        self._uwriter: asyncio.StreamWriter | None = None
        self.seq = 0
        self.unit: int | None = None  # n of the unit in progress
        self.fault = NONE

    @property
    def ureader(self) -> asyncio.StreamReader:
        assert self._ureader is not None
        return self._ureader

    @property
    def uwriter(self) -> asyncio.StreamWriter:
        assert self._uwriter is not None
        return self._uwriter

    async def run(self) -> None:
        try:
            self._ureader, self._uwriter = await self.proxy._open_upstream()
        except OSError:
            with self.proxy._cond:
                self.proxy._upstream_failures += 1
            self.rst_client()  # as close to "connection refused" as an accepted socket gets
            return
        if self.proxy.protocol == "http":
            await self._run_http()
        else:
            await self._run_smtp()

    # units

    def begin(self, **info: Any) -> Fault:
        n, fault = self.proxy._begin(UnitInfo(self.proxy.protocol, self.number, self.seq, **info))
        self.seq += 1
        self.unit, self.fault = n, fault
        return fault

    def mark(self, **changes: Any) -> None:
        if self.unit is not None:
            self.proxy._update(self.unit, **changes)

    def end(self, outcome: str, **changes: Any) -> None:
        if self.unit is not None:
            self.proxy._update(self.unit, outcome=outcome, **changes)
            self.unit, self.fault = None, NONE

    async def apply_after(self, kind: Kind) -> None:
        if kind is Kind.RESET_AFTER:
            self.rst_client()
        elif kind is Kind.DROP_REPLY:
            await self.fin_client()
        elif kind is Kind.HANG_AFTER:
            await self.hang()

    # HTTP

    async def _run_http(self) -> None:
        while True:
            head = await self.next_from_client(self._read_http_head)
            request = _parse_request(head)
            fault = self.begin(method=request.method, path=request.path, headers=request.headers)
            kind = fault.kind
            if kind is Kind.RESET_BEFORE:
                self.end("faulted")
                self.rst_client()
                return
            if kind is Kind.HANG_BEFORE:
                self.end("faulted")
                await self.hang()
                return
            if kind is Kind.STATUS:
                await self._copy_body(request.length, forward=False)
                self.end("faulted", answered=True)
                await self.to_client(_status_response(fault))
                if _closes(dict((k.lower(), v) for k, v in fault.headers)):
                    await self.fin_client()
                    return
                continue
            await self.to_upstream(head)
            await self._copy_body(request.length, forward=True)
            self.mark(forwarded=True)
            status, reply, close = await self._read_response(request.method)
            if kind is Kind.NONE:
                self.end("passed", answered=True, reply=status)
                await self.to_client(reply)
                if close:
                    await self.fin_client()
                    return
                continue
            self.end("faulted", reply=status)
            await self.apply_after(kind)
            return

    async def _read_http_head(self) -> bytes:
        while True:
            try:
                head = await self.creader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise _Refusal(431, f"request head longer than {LIMIT} bytes") from exc
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise _ClientClosed from exc
            head = head.lstrip(b"\r\n")  # stray CRLFs between requests are allowed
            if head:
                return head

    async def _copy_body(self, length: int, *, forward: bool) -> None:
        while length > 0:
            try:
                chunk = await self.creader.read(min(CHUNK, length))
            except ConnectionError as exc:
                raise _ClientClosed from exc
            if not chunk:
                raise _ClientClosed
            length -= len(chunk)
            if forward:
                await self.to_upstream(chunk)

    async def _read_response(self, method: str) -> tuple[int, bytes, bool]:
        """The upstream's whole reply (interim 1xx ones included): status, bytes, closes."""
        data = bytearray()
        while True:
            try:
                head = await self.ureader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError as exc:
                raise _Refusal(502, f"response head longer than {LIMIT} bytes") from exc
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise _UpstreamClosed from exc
            first, headers = _parse_head(head, 502)
            parts = first.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise _Refusal(502, f"cannot parse the upstream's status line {first!r}")
            status = int(parts[1])
            data += head
            if status == 101:
                raise _Refusal(502, "the proxy does not follow protocol upgrades (101)")
            if status >= 200:
                break
        close = _closes(headers) or (parts[0] == "HTTP/1.0"
                                     and "keep-alive" not in headers.get("connection", "").lower())
        try:
            if method == "HEAD" or status in (204, 304):
                pass
            elif "transfer-encoding" in headers:
                raise _Refusal(502, "the proxy does not support Transfer-Encoding: "
                               f"{headers['transfer-encoding']} responses; use Content-Length")
            elif "content-length" in headers:
                data += await self.ureader.readexactly(_content_length(headers, 502))
            else:  # the body runs to the end of the connection
                data += await self.ureader.read()
                close = True
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _UpstreamClosed from exc
        return status, bytes(data), close

    # SMTP

    async def _run_smtp(self) -> None:
        await self.to_client((await self._read_reply())[1])  # the greeting
        while True:
            line = await self.next_from_client(self._read_smtp_line)
            words = line.split(maxsplit=1)
            verb = words[0].upper() if words else b""
            if verb == b"STARTTLS":
                self.proxy._error(f"connection {self.number}: STARTTLS refused (the proxy cannot "
                                  "relay TLS)")
                await self.to_client(b"454 4.7.0 FaultProxy cannot relay TLS\r\n")
                continue
            starting = self.unit is None and verb == b"MAIL"
            if starting:
                kind = self.begin(mail_from=_smtp_address(line)).kind
                if kind is Kind.RESET_BEFORE:
                    self.end("faulted")
                    self.rst_client()
                    return
                if kind is Kind.HANG_BEFORE:
                    self.end("faulted")
                    await self.hang()
                    return
            await self.to_upstream(line)
            code, reply = await self._read_reply()
            if self.unit is not None:
                ok = 200 <= code < 300
                if starting and not ok:
                    self.end("aborted", reply=code)
                elif verb == b"RCPT" and ok:
                    rcpt_tos = self.proxy.record(self.unit).rcpt_tos
                    self.mark(rcpt_tos=(*rcpt_tos, _smtp_address(line)))
                elif verb in (b"RSET", b"QUIT", b"HELO", b"EHLO", b"LHLO"):
                    self.end("aborted")
                elif verb == b"DATA" and code == 354:
                    await self.to_client(reply)
                    await self._forward_data()
                    self.mark(forwarded=True)
                    code, reply = await self._read_reply()
                    kind = self.fault.kind
                    if kind is not Kind.NONE:
                        self.end("faulted", reply=code)
                        await self.apply_after(kind)
                        return
                    self.end("passed", answered=True, reply=code)
            await self.to_client(reply)

    async def _read_smtp_line(self) -> bytes:
        try:
            return await self.creader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raise _Refusal(500, f"5.5.2 command line longer than {LIMIT} bytes") from exc
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _ClientClosed from exc

    async def _read_reply(self) -> tuple[int, bytes]:
        data = bytearray()
        while True:
            try:
                line = await self.ureader.readuntil(b"\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError) as exc:
                raise _UpstreamClosed from exc
            data += line
            if line[3:4] != b"-":
                break
        code = int(data[:3]) if data[:3].isdigit() else 0
        return code, bytes(data)

    async def _forward_data(self) -> None:
        """Copy the DATA body, through the line holding only ".", from the client to upstream."""
        pending = bytearray()
        at_line_start = True
        while True:
            line = await self._read_data_line()
            pending += line
            if at_line_start and line == b".\r\n":
                await self.to_upstream(bytes(pending))
                return
            at_line_start = line.endswith(b"\r\n")
            if len(pending) >= CHUNK:
                await self.to_upstream(bytes(pending))
                pending.clear()

    async def _read_data_line(self) -> bytes:
        try:
            try:
                return await self.creader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:  # a huge line: pass it on in pieces
                return await self.creader.readexactly(exc.consumed)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _ClientClosed from exc

    # I/O

    async def next_from_client(self, read: Callable[[], Awaitable[bytes]]) -> bytes:
        """Read the client's next unit or command while watching the idle upstream.

        If the upstream closes meanwhile, raise _UpstreamClosed (so the client is closed too, as
        the upstream's idle close would). If it sends something unasked, for example an SMTP
        421, pass that to the client.
        """
        reading = asyncio.ensure_future(read())
        try:
            while True:
                watching = asyncio.ensure_future(self.ureader.read(CHUNK))
                try:
                    await asyncio.wait((reading, watching), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    await _finish(watching)  # cancelling it leaves unread data in the buffer
                if not watching.cancelled():
                    try:
                        data = watching.result()
                    except ConnectionError:
                        data = b""
                    if not data:
                        raise _UpstreamClosed
                    await self.to_client(data)
                if reading.done():
                    return reading.result()
        finally:
            await _finish(reading)

    async def to_client(self, data: bytes) -> None:
        try:
            self.cwriter.write(data)
            await self.cwriter.drain()
        except ConnectionError as exc:
            raise _ClientClosed from exc

    async def to_upstream(self, data: bytes) -> None:
        try:
            self.uwriter.write(data)
            await self.uwriter.drain()
        except ConnectionError as exc:
            raise _UpstreamClosed from exc

    def close_upstream(self) -> None:
        if self._uwriter is not None and not self._uwriter.is_closing():
            self._uwriter.close()

    def rst_client(self) -> None:
        """Close the client connection with a TCP RST (SO_LINGER 0)."""
        self.close_upstream()
        sock = self.cwriter.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.cwriter.transport.abort()

    async def fin_client(self) -> None:
        """Close the client connection gracefully: FIN, then let the client close its side."""
        self.close_upstream()
        writer = self.cwriter
        if writer.is_closing():
            return
        try:
            if writer.can_write_eof():
                writer.write_eof()
            await writer.drain()
            async with asyncio.timeout(LINGER):
                while await self.creader.read(CHUNK):
                    pass
        except (TimeoutError, ConnectionError):
            pass

    async def hang(self) -> None:
        """Keep the client connection open and silent until the client closes it."""
        self.close_upstream()
        try:
            while await self.creader.read(CHUNK):
                pass
        except ConnectionError:
            pass

    async def refuse(self, refusal: _Refusal) -> None:
        if self.cwriter.is_closing():
            return
        if self.proxy.protocol == "http":
            body = f"FaultProxy: {refusal.message}\n".encode()
            reason = _reason(refusal.code)
            reply = (f"HTTP/1.1 {refusal.code} {reason}\r\nContent-Type: text/plain; charset=utf-8"
                     f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        else:
            reply = f"{refusal.code} FaultProxy: {refusal.message}\r\n".encode()
        with contextlib.suppress(_ClientClosed):
            await self.to_client(reply)
        await self.fin_client()

    async def close(self) -> None:
        for writer in (self.cwriter, self._uwriter):
            if writer is None:
                continue
            if self.proxy._stopping:
                writer.transport.abort()
            elif not writer.is_closing():
                writer.close()
            try:
                async with asyncio.timeout(LINGER):
                    await writer.wait_closed()
            except TimeoutError:  # a peer that reads nothing cannot hold the socket open
                writer.transport.abort()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            except Exception:
                pass


async def _finish(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` if it is still pending and wait for it. Its result stays readable.

    A CancelledError is re-raised only if it is the current task that is being cancelled.
    """
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at collection
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    length: int


def _parse_head(head: bytes, code: int) -> tuple[str, dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[:1] in (" ", "\t"):
            raise _Refusal(code, f"cannot parse the header line {line!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return lines[0], headers


def _parse_request(head: bytes) -> _Request:
    first, headers = _parse_head(head, 400)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _Refusal(400, f"cannot parse the request line {first!r}")
    if "transfer-encoding" in headers:
        raise _Refusal(501, f"Transfer-Encoding: {headers['transfer-encoding']} request bodies are "
                       "not supported; send a Content-Length")
    if "100-continue" in headers.get("expect", "").lower():
        raise _Refusal(417, "Expect: 100-continue is not supported")
    return _Request(parts[0], parts[1], headers, _content_length(headers, 400))


def _content_length(headers: Mapping[str, str], code: int) -> int:
    value = headers.get("content-length")
    if value is None:
        return 0
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise _Refusal(code, f"bad Content-Length {value!r}")
    return int(values.pop())


def _closes(headers: Mapping[str, str]) -> bool:
    return "close" in {t.strip().lower() for t in headers.get("connection", "").split(",")}


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _status_response(fault: Fault) -> bytes:
    code = fault.status or 500
    headers = [(k, v) for k, v in fault.headers if k.lower() != "content-length"]
    body = fault.body
    if body is None:
        body = json.dumps({"errors": [{"field": None, "help": None, "message":
                                       f"injected by FaultProxy: {code} {_reason(code)}"}]}).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
    lines = [f"HTTP/1.1 {code} {_reason(code)}", "Server: fault-proxy",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _smtp_address(line: bytes) -> str:
    """The address in ``MAIL FROM:<a@b> SIZE=1`` or ``RCPT TO:<a@b>``."""
    text = line.decode("utf-8", "replace")
    start, end = text.find("<"), text.find(">")
    if 0 <= start < end:
        return text[start + 1:end]
    _, _, rest = text.partition(":")
    return rest.strip().split(" ")[0]
