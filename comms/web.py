"""The web app: RSVP pages, one-click unsubscribe, inbound calendar replies, a health check.

Handlers are thin: they read the request, make one library call in a worker thread (store calls
block), and render a page. GET never changes anything, because mail scanners (Microsoft Safe
Links in NHSmail among them) fetch every link in a message before the person sees it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .app import App
from .errors import CommsError, StoreError
from .events import EventCancelled
from .message import HONEYPOT_PATH
from .safety import is_loopback
from .stopping import Stop
from .suppression import AddressHasher, unsubscribe_send
from .testsend import is_test
from .tokens import InvalidToken
from .tracking import ingest
from .tracking.checkins import MAX_COMMENT, PAIR_ANSWERS, RATINGS, Checkins, NotAnswerable, Question
from .tracking.inbound import process_message
from .tracking.providers import sendgrid as webhook
from .tracking.rsvp import Answer, Invitation

log = logging.getLogger(__name__)
access_log = logging.getLogger("comms.web.access")

_pages = Environment(loader=FileSystemLoader(Path(__file__).with_name("web")), autoescape=True,
                     undefined=StrictUndefined)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADERS = {
    # no third-party assets; the token in the URL must not leak to an online-meeting link
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
BUTTONS: dict[str, str] = {"accepted": "Yes, I will attend", "declined": "No, I cannot attend",
                           "tentative": "Maybe, I might attend"}
STATUS_WORDS = {"accepted": "you are coming", "waitlisted": "you are on the waiting list",
                "declined": "you have declined", "tentative": "maybe",
                "no response": "you have not answered yet"}


class Problem(Exception):
    """A request we refuse, shown as a page with a status, a heading and what to do next."""

    def __init__(self, status: int, title: str, message: str) -> None:
        self.status, self.title, self.message = status, title, message
        super().__init__(f"{status} {title}")


HEADER_TIMEOUT = 10.0  # seconds a client has to send a request's headers
KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open
MAX_FORM = 16_384  # bytes: a rating and a comment
MIN_REPORT_TOKEN = 32  # characters: a report token shorter than this is refused


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _pages.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status)


def create_app(app: App) -> ASGIApp:
    """The ASGI app over one comms App (its project, store and clock): only the host of
    ``COMMS_BASE_URL`` is served (others get 400), no slash redirects (they would reflect the
    Host header), and every response — pages, JSON, errors, 500s — carries the security
    headers (HSTS too when served over HTTPS)."""
    web = _Handlers(app)
    routes = [
        Route("/rsvp/{token}", web.rsvp_page, methods=["GET"]),
        Route("/rsvp/{token}", web.rsvp_answer, methods=["POST"]),
        Route("/h/{uid}", web.honeypot, methods=["GET"]),
        Route("/a/{token}", web.answer_page, methods=["GET"]),
        Route("/a/{token}", web.answer, methods=["POST"]),
        Route("/u/{token}", web.unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", web.unsubscribe, methods=["POST"]),
        Route("/inbound/sendgrid", web.inbound_sendgrid, methods=["POST"]),
        Route("/webhooks/sendgrid", web.sendgrid_events, methods=["POST"]),
        Route("/healthz", web.healthz, methods=["GET"]),
        Route("/reports", web.reports, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        Problem: _problem_page, HTTPException: _http_error_page}
    base = urlsplit(app.settings.base_url)
    hosts = [base.hostname or "localhost"]
    if is_loopback(base.hostname):  # served on this machine: any of its loopback names
        hosts += ["localhost", "127.0.0.1", "::1", "[::1]"]
    inner = Starlette(routes=routes, exception_handlers=handlers,
                      middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts,
                                             www_redirect=False), Middleware(_AccessLog)])
    inner.router.redirect_slashes = False
    return _SecurityHeaders(inner, hsts=base.scheme == "https")


def serve(app: App, *, host: str, port: int, stop: Stop) -> None:
    """Run the web app under uvicorn until ``stop`` is requested."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = server(app, host=host, port=port)
    stop.on_stop(lambda: setattr(running, "should_exit", True))
    running.run()


def server(app: App, *, host: str, port: int) -> Any:
    """A uvicorn server for the web app (no access log: paths carry tokens; header-read and
    keep-alive timeouts set). comms handles the signals itself: uvicorn re-raises the one that
    stopped it, which would end the process before what is in flight is recorded."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    class Protocol(H11Protocol):
        """uvicorn's HTTP/1.1, with a deadline for each request's headers: a client that
        trickles them (slowloris) is dropped instead of holding a connection."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not None and self.cycle is not before and self._deadline:
                self._deadline.cancel()  # the headers came in time

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline:
                self._deadline.cancel()
            if not self.transport.is_closing():
                self._deadline = self.loop.call_later(HEADER_TIMEOUT, self.transport.close)

    return Server(uvicorn.Config(create_app(app), host=host, port=port, access_log=False,
                                 server_header=False, proxy_headers=True, http=Protocol,
                                 timeout_keep_alive=KEEP_ALIVE))


class _Handlers:
    def __init__(self, app: App) -> None:
        self.app = app
        # build the lazy parts once, before requests arrive on several threads
        app.project.raise_errors()
        _ = app.store, app.tokens, app.composer
        self.rsvps = app.rsvps
        self.checkins = Checkins(app)
        self.hasher = AddressHasher(app.store)
        self.webhook = webhook.gate(app.settings.sendgrid_webhook_public_key,
                                    insecure=app.settings.sendgrid_webhook_insecure)
        self.inbound = _inbound_gate(app)
        token = app.settings.report_token
        self.report_token = token.get_secret_value().encode() if token else None
        if self.report_token is not None and len(self.report_token) < MIN_REPORT_TOKEN:
            log.error("COMMS_REPORT_TOKEN is shorter than %d characters: /reports is off",
                      MIN_REPORT_TOKEN)
            self.report_token = None

    # --- RSVP links --------------------------------------------------------------------------

    async def rsvp_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self._test_link(token, lambda t: self.app.tokens.read_rsvp(t, _EPOCH)[0]):
            return page("test.html")
        invitation, answer = await run_in_threadpool(self._invitation, token)
        seats = await run_in_threadpool(self.rsvps.seats_left, invitation)
        return page("rsvp.html", **self._view(invitation, seats), button=BUTTONS[answer],
                    status_words=STATUS_WORDS.get(invitation.status, invitation.status))

    async def rsvp_answer(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self._test_link(token, lambda t: self.app.tokens.read_rsvp(t, _EPOCH)[0]):
            return page("test.html")
        invitation, status = await run_in_threadpool(self._answer, token)
        seats = await run_in_threadpool(self.rsvps.seats_left, invitation)
        return page("rsvp_done.html", **self._view(invitation, seats), outcome=status)

    @staticmethod
    def _test_link(token: str, read: Callable[[str], str]) -> bool:
        """A link of a test send (``comms send --test-to``): it records nothing."""
        try:
            return is_test(read(token))
        except InvalidToken:
            return False

    def _invitation(self, token: str) -> tuple[Invitation, Answer]:
        try:
            return self.rsvps.by_token(token)
        except InvalidToken:
            raise self._link_problem(token) from None

    def _link_problem(self, token: str) -> Problem:
        """Why a link was refused: forged or cut short (400), expired (410), or unknown (404)."""
        try:
            self.app.tokens.read_rsvp(token, _EPOCH)
        except InvalidToken:
            return Problem(400, "This link is not valid",
                           "The link may have been cut short or changed on the way. Open it again "
                           "from your invitation email, or answer the calendar invitation instead.")
        try:
            self.app.tokens.read_rsvp(token, self.app.clock.now())
        except InvalidToken:
            return Problem(410, "This event is over",
                           "The event has ended, so this invitation no longer takes answers.")
        return Problem(404, "We cannot find this invitation",
                       "It may have been withdrawn. Please contact the programme office.")

    def _answer(self, token: str) -> tuple[Invitation, str]:
        invitation, answer = self._invitation(token)
        try:  # (a failing waitlist or promotion email does not reach here: Rsvps.answer logs it)
            return invitation, self.rsvps.answer(invitation, answer, "link").status
        except EventCancelled:
            raise Problem(410, "This event has been cancelled",
                          "It no longer takes answers. Your invitation email tells you who to "
                          "contact.") from None
        except CommsError as exc:
            raise _not_saved(f"rsvp {invitation.campaign.id}/{invitation.event.id}", exc,
                             "try the button again") from None

    def _view(self, invitation: Invitation, seats: int | None) -> dict[str, Any]:
        event = invitation.event
        starts, ends = event.starts, event.ends
        day = f"{starts:%A} {starts.day} {starts:%B %Y}"
        if ends.date() == starts.date():
            when = f"{day}, {starts:%H:%M} to {ends:%H:%M}"
        else:
            when = f"{day}, {starts:%H:%M} to {ends:%A} {ends.day} {ends:%B %Y}, {ends:%H:%M}"
        return {"event": event, "when": when, "first_name": invitation.first_name,
                "zone": event.timezone or self.app.settings.timezone,
                "online_url": str(event.online_url) if event.online_url else None,
                "capacity": event.capacity, "seats_left": seats,
                "cancelled": event.status == "cancelled", "sender": invitation.campaign.sender.name}

    # --- check-ins and feedback ----------------------------------------------------------------

    async def honeypot(self, request: Request) -> Response:
        """The hidden link of a message with ``tracking: {honeypot: true}``: only a machine
        follows it. Nothing is recorded here; the provider's click event says it happened."""
        return page("error.html", 404, title="Nothing here", message="This page is empty.",
                    code=404)

    async def answer_page(self, request: Request) -> Response:
        if self._test_link(request.path_params["token"], lambda t: self.app.tokens.read_answer(t)[0]):
            return page("test.html")
        question = await run_in_threadpool(self._question, request.path_params["token"])
        chosen = int(question.value) if question.value.isdigit() else None
        return page("answer.html", **self._answer_view(question), chosen=chosen)

    async def answer(self, request: Request) -> Response:
        if self._test_link(request.path_params["token"], lambda t: self.app.tokens.read_answer(t)[0]):
            return page("test.html")
        question = await run_in_threadpool(self._question, request.path_params["token"])
        rating, comment = None, ""
        if question.what == "rating":
            body = await _read_body(request, MAX_FORM)
            if body is None:
                raise Problem(413, "Your answer is too long", "Please shorten the comment.")
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
            given = (form.get("rating") or [question.value])[0]
            if given not in {str(n) for n in RATINGS}:
                raise Problem(400, "Please choose a rating",
                              "Go back and choose a rating from 1 to 5, then send it.")
            rating, comment = int(given), (form.get("comment") or [""])[0].strip()
        try:
            await run_in_threadpool(self.checkins.answer, question, rating=rating,
                                    comment=comment)
        except CommsError as exc:
            raise _not_saved(f"answer {question.campaign.id}/{question.step.id}", exc,
                             "try again") from None
        return page("answer_done.html", **self._answer_view(question), rating=rating)

    def _question(self, token: str) -> Question:
        try:
            return self.checkins.question(token)
        except InvalidToken:
            raise Problem(400, "This link is not valid",
                          "The link may have been cut short or changed on the way. Open it again "
                          "from your email.") from None
        except NotAnswerable:
            raise Problem(404, "We cannot find what this link answers",
                          "It may have been withdrawn. Please contact the programme office.") from None

    def _answer_view(self, question: Question) -> dict[str, Any]:
        heading = ("How is your mentoring going?" if question.what == "pair"
                   else "Your feedback")
        button = f"Yes: {PAIR_ANSWERS.get(question.value, '')}"
        return {"q": question, "heading": heading, "words": PAIR_ANSWERS, "button": button,
                "ratings": list(RATINGS), "max_comment": MAX_COMMENT}

    # --- one-click unsubscribe (RFC 8058) ------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        if is_test(self._unsubscribe_uid(request.path_params["token"])):
            return page("test.html")
        return page("unsubscribe.html", done=False)

    async def unsubscribe(self, request: Request) -> Response:
        uid = self._unsubscribe_uid(request.path_params["token"])
        if is_test(uid):
            return page("test.html")
        found = await run_in_threadpool(unsubscribe_send, self.app.store, self.hasher, uid,
                                        now=self.app.clock.now(), source="one-click")
        log.info("unsubscribe: %s", "address suppressed" if found else "no such send (erased?)")
        return page("unsubscribe.html", done=True)

    def _unsubscribe_uid(self, token: str) -> str:
        try:
            return self.app.tokens.read_unsubscribe(token)
        except InvalidToken:
            raise Problem(400, "This link is not valid",
                          "The link may have been cut short or changed on the way. Use the "
                          "unsubscribe link in the email again, or reply to the email and ask.") from None

    # --- SendGrid Inbound Parse (raw mode) -----------------------------------------------------

    async def inbound_sendgrid(self, request: Request) -> Response:
        """Inbound Parse (raw): authenticated before anything is parsed — SendGrid's signature
        policy (``COMMS_SENDGRID_INBOUND_PUBLIC_KEY``), Basic credentials in the Parse URL
        (``COMMS_INBOUND_BASIC_AUTH``), or both; neither configured: 503, nothing read."""
        gate = self.inbound
        if gate.problem:
            return JSONResponse({"error": gate.problem}, 503)
        if gate.basic is not None and not _basic_ok(request, gate.basic):
            log.warning("inbound: refused (no or wrong Basic credentials)")
            return Response("credentials are needed", 401,
                            {"WWW-Authenticate": 'Basic realm="comms inbound"'})
        limit = self.app.settings.inbound_max_bytes
        body = await _read_body(request, limit)
        if body is None:
            return JSONResponse({"error": f"the message is larger than {limit} bytes"}, 413)
        if gate.key is not None:
            try:
                webhook.verify(gate.key, body, request.headers.get(webhook.SIGNATURE_HEADER),
                               request.headers.get(webhook.TIMESTAMP_HEADER),
                               now=self.app.clock.now())
            except webhook.WebhookRefused as exc:
                log.warning("inbound: refused (%s)", exc.reason)
                return JSONResponse({"error": exc.reason}, 403)
        try:
            form = await Request(request.scope, _replay(body)).form(max_part_size=limit,
                                                                    max_files=5, max_fields=50)
        except HTTPException as exc:
            return JSONResponse({"error": f"unreadable form: {exc.detail}"}, 400)
        field = form.get("email")
        if isinstance(field, UploadFile):
            raw = await field.read()
        elif isinstance(field, str):
            raw = field.encode("utf-8")
        else:
            return JSONResponse({"error": "no 'email' field: set Inbound Parse to POST the raw, "
                                          "full MIME message"}, 400)
        await form.close()
        try:
            result = await run_in_threadpool(process_message, self.rsvps, raw)
        except StoreError:
            log.warning("inbound: store unavailable; the sender will retry")
            return JSONResponse({"error": "store unavailable, try again"}, 503)
        except RecursionError:
            return JSONResponse({"error": "the message is nested too deep"}, 400)
        log.info("inbound: %s", result.line())
        left = (len(result.stale) + len(result.not_invited) + len(result.not_understood)
                + len(result.unmatched))
        return JSONResponse({"recorded": len(result.recorded), "unmatched": left})

    # --- SendGrid Event Webhook ----------------------------------------------------------------

    async def sendgrid_events(self, request: Request) -> Response:
        """Signed batches of events: 2xx only once committed, so SendGrid retries anything else."""
        if self.webhook.problem:
            return JSONResponse({"error": self.webhook.problem}, 503)
        limit = self.app.settings.inbound_max_bytes  # SendGrid's batches are under 1 MB
        body = await _read_body(request, limit)
        if body is None:
            return JSONResponse({"error": f"the batch is larger than {limit} bytes"}, 413)
        if self.webhook.key is not None:
            try:
                webhook.verify(self.webhook.key, body, request.headers.get(webhook.SIGNATURE_HEADER),
                               request.headers.get(webhook.TIMESTAMP_HEADER), now=self.app.clock.now())
            except webhook.WebhookRefused as exc:
                log.warning("sendgrid webhook: refused (%s)", exc.reason)
                return JSONResponse({"error": exc.reason}, 403)
        try:
            events = webhook.parse(body)
        except ValueError:
            return JSONResponse({"error": "the body is not a JSON array of events"}, 400)
        settings = self.app.settings
        try:
            result = await run_in_threadpool(ingest.ingest, self.app.store,
                                             webhook.parse_events(events),
                                             now=self.app.clock.now(), hasher=self.hasher,
                                             machine_click_seconds=settings.machine_click_seconds,
                                             honeypot=f"{settings.base_url.rstrip('/')}"
                                                      f"{HONEYPOT_PATH}")
        except StoreError:
            log.warning("sendgrid webhook: store unavailable; SendGrid will retry")
            return JSONResponse({"error": "store unavailable, try again"}, 503)
        return JSONResponse({"received": result.received, "matched": result.matched})

    async def reports(self, request: Request) -> Response:
        """The HTML report (``?campaign=``, ``?by=``), for whoever holds COMMS_REPORT_TOKEN."""
        from .report import GROUPINGS, report

        if self.report_token is None:
            raise HTTPException(404)
        given = _bearer(request)
        if given is None:
            return Response("a report token is needed, in the Authorization header (never in "
                            "the URL: URLs end up in logs and browser history)", 401,
                            {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given, self.report_token):
            return Response("this report token is not valid", 403)
        by = request.query_params.get("by", "borough")
        campaign = request.query_params.get("campaign") or None
        if by not in GROUPINGS or (campaign and campaign not in self.app.project.campaigns):
            raise HTTPException(404)
        html = await run_in_threadpool(
            lambda: report(self.app, campaign=campaign, by=by).render("html"))
        return HTMLResponse(html)

    async def healthz(self, request: Request) -> Response:
        """Liveness: ``ok`` and the version; with the report token (Authorization: Bearer),
        also what ``comms status`` shows of the scheduler: next due, last run, paused."""
        given = _bearer(request)
        if self.report_token is None or given is None or not hmac.compare_digest(
                given, self.report_token):
            return JSONResponse({"status": "ok", "version": __version__})
        return JSONResponse({**await run_in_threadpool(self._health), "version": __version__})

    def _health(self) -> dict[str, Any]:
        from .status import status

        found = status(self.app, settle_dead=False)
        return {"status": "ok", "last_run": found.last_run,
                "next": [{**u, "due": u["due"].isoformat()} for u in found.upcoming[:5]],
                "paused": sorted(found.paused)}


@dataclass(frozen=True, slots=True)
class _InboundGate:
    key: str | None  # the signature policy's public key
    basic: tuple[bytes, bytes] | None  # user, password
    problem: str | None = None  # refuse every post (503) for this


def _inbound_gate(app: App) -> _InboundGate:
    settings = app.settings
    key = settings.sendgrid_inbound_public_key
    basic = None
    if settings.inbound_basic_auth is not None:
        user, sep, password = settings.inbound_basic_auth.get_secret_value().partition(":")
        if not sep or not user or not password:
            return _InboundGate(None, None, "COMMS_INBOUND_BASIC_AUTH must be user:password")
        basic = (user.encode(), password.encode())
    if key:
        gate = webhook.gate(key, insecure=False)
        if gate.problem:
            return _InboundGate(None, None, gate.problem)
    if not key and basic is None:
        return _InboundGate(None, None, "inbound mail is not authenticated: set "
                            "COMMS_SENDGRID_INBOUND_PUBLIC_KEY (Inbound Parse's signature "
                            "policy) or COMMS_INBOUND_BASIC_AUTH (credentials in the Parse URL)")
    return _InboundGate(key or None, basic)


def _basic_ok(request: Request, expected: tuple[bytes, bytes]) -> bool:
    """HTTP Basic credentials, compared in constant time."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return False
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    good_user = hmac.compare_digest(user, expected[0])
    good_password = hmac.compare_digest(password, expected[1])
    return bool(sep) and good_user and good_password


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it is known to exceed ``limit`` (declared or counted)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _not_saved(what: str, exc: Exception, retry: str) -> Problem:
    """An answer the store did not take (logged without the person): 503, try again later."""
    log.warning("%s: %s while recording", what, type(exc).__name__)
    return Problem(503, "Your answer was not saved",
                   f"Something went wrong on our side. Please {retry} in a few minutes.")


async def _problem_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return page("error.html", exc.status, title=exc.title, message=exc.message, code=exc.status)


async def _http_error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Page not found", 405: "Not allowed here"}
    return page("error.html", exc.status_code, code=exc.status_code,
                title=titles.get(exc.status_code, "Request refused"),
                message="Check the link in your email, or contact the programme office.")


def _bearer(request: Request) -> bytes | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer " or not header[7:].strip().isascii():
        return None
    return header[7:].strip().encode("ascii")


class _SecurityHeaders:
    """The security headers on every response, whatever produced it."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in _HEADERS.items()]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                if https and b"strict-transport-security" not in {k for k, _ in extra} | present:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class _AccessLog:
    """Method, route pattern, status and time per request: never the path, which holds tokens."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "(no route)")
            access_log.info("%s %s %d %.0f ms", scope["method"], route, status,
                            (time.perf_counter() - started) * 1000)
