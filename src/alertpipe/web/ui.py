"""The web dashboard under ``/ui/``: server-rendered pages, no script.

Pages: log-in, channels (state, throughput, queues, circuits), messages (filters, search,
paging), a message's detail (body, fields, every delivery and attempt, with resend, retry and
discard), the audit log (admins) and, in demo mode, the emulators' SMS inbox and Sheet.

Roles: ``viewer`` reads; ``operator`` also resends, retries, discards and stops or starts a
channel; ``admin`` also reads the audit log. Every POST carries the session's CSRF token (403
without it). Viewing a message's detail and every action append an audit entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import simplejson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from alertpipe.auth import ClientRateLimiter
from alertpipe.destinations.base import Delivery
from alertpipe.errors import StoreUnavailable
from alertpipe.store.base import DeliveryRecord, StoredMessage
from alertpipe.web import actions
from alertpipe.web.chart import throughput_svg
from alertpipe.web.passwords import dummy_hash, verify_password
from alertpipe.web.queries import (
    MESSAGE_STATES,
    channel_views,
    find_messages,
    message_state,
    order_id_of,
    parse_when,
)
from alertpipe.web.redact import redact
from alertpipe.web.sessions import (
    LOGIN_COOKIE,
    LOGIN_FORM_SECONDS,
    SESSION_COOKIE,
    Session,
    SessionCodec,
    csrf_matches,
    session_secret,
)
from alertpipe.web.ui_demo import demo_sheets, demo_sms
from alertpipe.web.ui_support import FormError, flatten, html, pretty, read_form, redirect

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

log = logging.getLogger("alertpipe.web")

PAGE_SIZE = 50
RESEND_WAIT = 5  # s: after a resend, the page waits this long for the new attempts' outcomes
MAX_WAIT = 30
AUDIT_PAGE = 100
NOTICES = {
    "resent": "Resent: the new deliveries are below.",
    "retried": "The dead letter is pending again and will be sent shortly.",
    "discarded": "The dead letter was discarded.",
    "stopped": "The channel is stopped: intake answers 503 and nothing is sent.",
    "started": "The channel is running again.",
}

Handler = Callable[[Request], Awaitable[Response]]
Page = Callable[[Request, Session], Awaitable[Response]]
Action = Callable[[Request, Session, dict[str, str]], Awaitable[Response]]

__all__ = ["Dashboard"]


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path, never another site."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


class Dashboard:
    def __init__(self, engine: Engine, *, environ: Mapping[str, str] | None = None) -> None:
        self.engine = engine
        es = engine.settings.engine
        secret, ephemeral = session_secret(es, environ)
        if not es.users:
            log.info("no dashboard users configured (engine.users): nobody can log in to /ui/")
        elif ephemeral:
            log.warning("no session secret configured (engine.session_secret or "
                        "ALERTPIPE_SESSION_SECRET): a random one is used, so dashboard "
                        "sessions end when the engine restarts")
        self.users = {u.name: u for u in es.users}
        self.sessions = SessionCodec(secret, es.users)
        self.logins = ClientRateLimiter(per_second=0.2, burst=10)
        self.demo_url = es.demo_emulator_url

    # -- plumbing -----------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        return self.sessions.read(request.cookies.get(SESSION_COOKIE))

    def render(self, request: Request, session: Session | None, name: str, status: int = 200,
               **context: Any) -> Response:
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return html(name, {"session": session, "demo": bool(self.demo_url), "notice": notice,
                           "path": request.url.path, **context}, status=status)

    def error(self, request: Request, session: Session | None, status: int,
              message: str) -> Response:
        return self.render(request, session, "error.html", status=status, status_code=status,
                           message=message)

    def page(self, role: str, fn: Page) -> Handler:
        async def endpoint(request: Request) -> Response:
            session = self.session(request)
            if session is None:
                here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect("/ui/login?" + urlencode({"next": here}))
            if not session.may(role):
                return self.error(request, session, 403,
                                  f"This page is for the {role} role; you are {session.role}.")
            try:
                return await fn(request, session)
            except actions.ActionError as exc:
                return self.error(request, session, exc.status, exc.message)
            except StoreUnavailable as exc:
                return self.error(request, session, 503, f"The store cannot answer now ({exc}); "
                                  "try again shortly.")
        return endpoint

    def action(self, role: str, fn: Action) -> Handler:
        """A POST: a session, its CSRF token in the form and the role are all required
        (403 otherwise, and nothing is done)."""
        async def endpoint(request: Request) -> Response:
            session = self.session(request)
            try:
                form = await read_form(request)
            except FormError:
                form = {}
            if session is None:
                return self.error(request, None, 403, "You are not logged in, or your session "
                                  "ended: log in again.")
            if not csrf_matches(session.csrf, form.get("csrf_token")):
                log.warning("CSRF check failed", extra={"user": session.user,
                                                        "path": request.url.path})
                return self.error(request, session, 403, "This form did not come from this "
                                  "session of the dashboard (CSRF check failed): reload the "
                                  "page and try again.")
            if not session.may(role):
                log.warning("action refused", extra={"user": session.user,
                                                     "role": session.role,
                                                     "path": request.url.path})
                return self.error(request, session, 403, f"This action needs the {role} role; "
                                  f"you are {session.role}.")
            try:
                return await fn(request, session, form)
            except actions.ActionError as exc:
                return self.error(request, session, exc.status, exc.message)
            except StoreUnavailable as exc:
                return self.error(request, session, 503, f"The store cannot accept this now "
                                  f"({exc}); look at the message again and retry shortly.")
        return endpoint

    @staticmethod
    def actor(session: Session) -> actions.Actor:
        return actions.Actor(session.user, session.role)

    # -- logging in and out -------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        if self.session(request) is not None:
            return redirect(_safe_next(request.query_params.get("next")))
        return self._login_page(request, status=200)

    def _login_page(self, request: Request, *, status: int, error: str | None = None,
                    next_url: str | None = None, headers: Mapping[str, str] | None = None,
                    ) -> Response:
        cookie, token = self.sessions.login_token()
        response = self.render(request, None, "login.html", status=status, login_token=token,
                               error=error, no_users=not self.users,
                               next=_safe_next(next_url or request.query_params.get("next")))
        response.headers.update(headers or {})
        response.set_cookie(LOGIN_COOKIE, cookie, max_age=LOGIN_FORM_SECONDS, path="/ui",
                            httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
        return response

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError:
            form = {}
        next_url = form.get("next")
        if not self.sessions.check_login_token(request.cookies.get(LOGIN_COOKIE),
                                               form.get("login_token")):
            return self._login_page(request, status=403, next_url=next_url,
                                    error="The log-in form expired or did not come from this "
                                          "dashboard; please try again.")
        client = request.client.host if request.client else "unknown"
        wait = self.logins.take(client)
        if wait > 0:
            log.warning("log-in attempts rate limited", extra={"client": client})
            return self._login_page(request, status=429, next_url=next_url,
                                    headers={"Retry-After": str(int(wait) + 1)},
                                    error=f"Too many log-in attempts; wait {int(wait) + 1} s.")
        name = form.get("username", "").strip()
        user = self.users.get(name)
        ok = await asyncio.to_thread(verify_password, form.get("password", ""),
                                     user.password_hash if user else dummy_hash())
        if user is None or not ok:
            # The name is logged only when it is a user's: a password typed into the name
            # field must not reach the log.
            log.warning("log-in failed", extra={"client": client,
                                                **({"user": name} if user else {})})
            return self._login_page(request, status=401, next_url=next_url,
                                    error="Wrong user name or password.")
        value, _ = self.sessions.issue(user)
        await self.engine.store.append_audit(user.name, user.role, "login", user.name, client)
        log.info("logged in", extra={"user": user.name, "role": user.role, "client": client})
        response = redirect(_safe_next(next_url))
        response.set_cookie(SESSION_COOKIE, value, max_age=int(self.sessions.max_age), path="/ui",
                            httponly=True, samesite="lax",
                            secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE, path="/ui")
        return response

    async def logout(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        await self.engine.store.append_audit(session.user, session.role, "logout", session.user)
        response = redirect("/ui/login")
        response.delete_cookie(SESSION_COOKIE, path="/ui", httponly=True, samesite="lax")
        return response

    # -- channels -----------------------------------------------------------------------
    async def channels(self, request: Request, session: Session) -> Response:
        now = datetime.now(UTC)
        views = await channel_views(self.engine, now=now)
        charts = {v.name: throughput_svg(v.points, now, f"throughput of {v.name}")
                  for v in views}
        return self.render(request, session, "channels.html", channels=views, charts=charts,
                           instance=self.engine.instance_id)

    def channel_action(self, run: bool) -> Action:
        async def act(request: Request, session: Session, form: dict[str, str]) -> Response:
            name = request.path_params["name"]
            await actions.set_channel(self.engine, self.actor(session), name, run)
            return redirect(f"/ui/?notice={'started' if run else 'stopped'}")
        return act

    # -- messages -----------------------------------------------------------------------
    async def messages(self, request: Request, session: Session) -> Response:
        q = request.query_params
        filters = {k: q.get(k, "").strip() for k in ("channel", "status", "destination", "q",
                                                     "since", "until")}
        error, page = None, None
        try:
            if filters["status"] and filters["status"] not in MESSAGE_STATES:
                raise ValueError(f"status must be one of {', '.join(MESSAGE_STATES)}")
            since = parse_when(filters["since"]) if filters["since"] else None
            until = parse_when(filters["until"]) if filters["until"] else None
            page = await find_messages(
                self.engine, channel=filters["channel"] or None,
                status=filters["status"] or None, destination=filters["destination"] or None,
                text=filters["q"] or None, since=since, until=until,
                cursor=q.get("cursor") or None, limit=PAGE_SIZE)
        except ValueError as exc:
            error = f"{exc} (dates are ISO 8601, e.g. 2024-05-01T12:00)"
        next_url = None
        if page is not None and page.next_cursor:
            next_url = "/ui/messages?" + urlencode(
                {**{k: v for k, v in filters.items() if v}, "cursor": page.next_cursor})
        destinations = sorted({d for ch in self.engine.channels.values()
                               for d in ch.destinations})
        return self.render(request, session, "messages.html", status=400 if error else 200,
                           filters=filters, error=error, page=page, next_url=next_url,
                           states=MESSAGE_STATES, channel_names=list(self.engine.channels),
                           destinations=destinations, state_of=message_state,
                           order_id_of=order_id_of)

    async def message(self, request: Request, session: Session) -> Response:
        stored = await actions.load_message(self.engine, request.path_params["message_id"])
        wait = request.query_params.get("wait", "")
        if wait.isdigit() and any(not d.terminal for d in stored.deliveries):
            stored = await self._settled(stored, min(int(wait), MAX_WAIT))
        await actions.audit(self.engine, self.actor(session), "view", stored.message.id)
        m = stored.message
        channel = self.engine.channels.get(m.channel)
        return self.render(
            request, session, "message.html", stored=stored, message=m,
            state=message_state(stored), order_id=order_id_of(m.body),
            fields=flatten(redact(dict(m.body))), meta=dict(m.meta), raw=_raw_view(m.raw),
            requests={d.id: self._request_summary(stored, d) for d in stored.deliveries},
            destinations=list(channel.destinations) if channel else [],
            csrf=session.csrf, may_act=session.may("operator"))

    async def _settled(self, stored: StoredMessage, seconds: float) -> StoredMessage:
        """The message once every delivery is final, or as it is after ``seconds``: woken by
        the engine each time one of its deliveries records an outcome (``?wait=N``)."""
        _, now = await self.engine.wait_final(stored.message.id, seconds)
        return now or stored

    def _request_summary(self, stored: StoredMessage, d: DeliveryRecord) -> str:
        """What the delivery sends, in a line: the destination's own description (never a
        secret), and for an SMS its text."""
        channel = self.engine.channels.get(d.channel)
        dest = channel.destinations.get(d.destination) if channel else None
        if dest is None:
            return f"{d.destination} (no longer configured)"
        probe = Delivery(id=d.id, message=stored.message, destination=d.destination,
                         target=d.target, attempts=d.attempts)
        text = dest.describe(probe)
        render = getattr(dest, "render", None)
        if callable(render):
            try:
                text += f": “{render(stored.message)}”"
            except Exception:  # a template that no longer fits this message
                pass
        return text

    async def resend(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        mid = request.path_params["message_id"]
        await actions.resend(self.engine, self.actor(session), mid, form.get("destination", ""))
        return redirect(f"/ui/messages/{quote(mid)}?notice=resent&wait={RESEND_WAIT}")

    def delivery_action(self, name: str) -> Action:
        act = actions.retry if name == "retry" else actions.discard
        notice = "retried" if name == "retry" else "discarded"

        async def endpoint(request: Request, session: Session,
                           form: dict[str, str]) -> Response:
            text = request.path_params["delivery_id"]
            if not (text.isascii() and text.isdigit()) or len(text) > 18:
                raise actions.ActionError(404, "not_found", "no such delivery")
            rec = await act(self.engine, self.actor(session), int(text))
            return redirect(f"/ui/messages/{quote(rec.message_id)}?notice={notice}")
        return endpoint

    # -- audit --------------------------------------------------------------------------
    async def audit(self, request: Request, session: Session) -> Response:
        before = request.query_params.get("before", "")
        before_id = (int(before) if before.isascii() and before.isdigit() and len(before) < 19
                     else None)
        entries = await self.engine.store.list_audit(limit=AUDIT_PAGE, before_id=before_id)
        older = (f"/ui/audit?before={entries[-1].id}" if len(entries) == AUDIT_PAGE else None)
        return self.render(request, session, "audit.html", entries=entries, older=older)

    # -- demo mode ----------------------------------------------------------------------
    async def demo_sms(self, request: Request, session: Session) -> Response:
        if not self.demo_url:
            return self.error(request, session, 404, "Demo mode is off (engine.demo_emulator_url "
                              "is not set).")
        texts, error = await demo_sms(self.demo_url)
        return self.render(request, session, "demo_sms.html", status=502 if error else 200,
                           texts=texts, error=error)

    async def demo_sheet(self, request: Request, session: Session) -> Response:
        if not self.demo_url:
            return self.error(request, session, 404, "Demo mode is off (engine.demo_emulator_url "
                              "is not set).")
        sheets, error = await demo_sheets(self.engine, self.demo_url)
        return self.render(request, session, "demo_sheet.html", status=502 if error else 200,
                           sheets=sheets, error=error)

    # -- routes -------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        viewer, operator, admin = "viewer", "operator", "admin"

        async def home(request: Request) -> Response:
            return redirect("/ui/")

        return [
            Route("/ui", home),
            Route("/ui/login", self.login_form, methods=["GET"]),
            Route("/ui/login", self.login, methods=["POST"]),
            Route("/ui/logout", self.action(viewer, self.logout), methods=["POST"]),
            Route("/ui/", self.page(viewer, self.channels)),
            Route("/ui/channels/{name}/stop", self.action(operator, self.channel_action(False)),
                  methods=["POST"]),
            Route("/ui/channels/{name}/start", self.action(operator, self.channel_action(True)),
                  methods=["POST"]),
            Route("/ui/messages", self.page(viewer, self.messages)),
            Route("/ui/messages/{message_id}", self.page(viewer, self.message)),
            Route("/ui/messages/{message_id}/resend", self.action(operator, self.resend),
                  methods=["POST"]),
            Route("/ui/deliveries/{delivery_id}/retry",
                  self.action(operator, self.delivery_action("retry")), methods=["POST"]),
            Route("/ui/deliveries/{delivery_id}/discard",
                  self.action(operator, self.delivery_action("discard")), methods=["POST"]),
            Route("/ui/audit", self.page(admin, self.audit)),
            Route("/ui/demo/sms", self.page(viewer, self.demo_sms)),
            Route("/ui/demo/sheet", self.page(viewer, self.demo_sheet)),
            Mount("/ui/static", StaticFiles(packages=[("alertpipe.web", "static")]),
                  name="static"),
        ]


def _raw_view(raw: bytes) -> str | None:
    """The bytes received, as indented JSON with secrets redacted; None if they are not JSON
    (then they are not shown: nothing could be redacted in them)."""
    if not raw:
        return None
    try:
        return pretty(simplejson.loads(raw, use_decimal=True))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
