"""The trader console: an aiohttp app served by the approval process.

Pages: /login (form), / (the desk). API under /api: state, events (server-sent events: pending signals,
decisions, expiries, quote adjustments), decide, kill-switch, ask. Sessions are HttpOnly SameSite=Strict
cookies; every POST needs the session's CSRF token in X-CSRF-Token and, when the browser sends one, a
same-origin Origin header. Behind a proxy, a trusted SSO header can log a known trader in instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration

from services.approval.auth import Accounts, Identity, Sessions, same_secret
from services.approval.desk import ApprovalDesk, AuditFeed, Fanout
from services.approval.settings import ApprovalSettings
from services.approval.store import EVENT_KILL_SWITCH, AuditEvent, SignalStore
from services.approval.views import ms, signal_view
from services.console.quoting import QuotesFeed, QuoteUpdate, QuotingStatus, QuotingUnavailable
from services.runtime.errors import InvalidArgument, ServiceError
from services.runtime.interceptors import insecure_channel
from tapewatch.analysis.v1 import analysis_pb2, analysis_pb2_grpc
from tapewatch.approval.v1 import approval_pb2

log = logging.getLogger("tapewatch.console")
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "tw_session"
LOGIN_CSRF_COOKIE = "tw_login_csrf"
IDENTITY = web.RequestKey("identity", Identity)
HISTORY_SHOWN = 60
HEARTBEAT_S = 15.0
EVENT_KINDS = {"signal.new": "new", "signal.approved": "decided", "signal.rejected": "decided"}
ACTIONS = {
    "APPROVE": approval_pb2.ACTION_APPROVE,
    "REJECT": approval_pb2.ACTION_REJECT,
    "MODIFY": approval_pb2.ACTION_MODIFY,
    "MARK_DUPLICATE": approval_pb2.ACTION_MARK_DUPLICATE,
    "MARK_WRONG_DIRECTION": approval_pb2.ACTION_MARK_WRONG_DIRECTION,
}
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Console:
    def __init__(
        self,
        settings: ApprovalSettings,
        desk: ApprovalDesk,
        store: SignalStore,
        feed: AuditFeed,
        accounts: Accounts,
        sessions: Sessions,
    ) -> None:
        self.settings = settings
        self.desk = desk
        self.store = store
        self.feed = feed
        self.accounts = accounts
        self.sessions = sessions
        self.quote_fanout = Fanout()
        self.quotes = QuotesFeed(settings.quoting_addr, self.quote_fanout)
        self.analysis_channel = insecure_channel(settings.analysis_addr, "console")
        self.analysis = analysis_pb2_grpc.AnalysisServiceStub(self.analysis_channel)
        self.sso_proxies = set(settings.sso_proxies)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._stop = asyncio.Event()
        self._quotes_task: asyncio.Task[None] | None = None
        self._pages = {name: (STATIC / name).read_text() for name in ("index.html", "login.html")}

    # ---- lifecycle -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._security_headers, self._authenticate])
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/api/state", self.state)
        app.router.add_get("/api/events", self.events)
        app.router.add_post("/api/decide", self.decide)
        app.router.add_post("/api/kill-switch", self.kill_switch)
        app.router.add_post("/api/ask", self.ask)
        app.router.add_static("/static/", STATIC, append_version=False)
        return app

    async def start(self) -> int:
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.console_host, self.settings.console_port)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        self._quotes_task = asyncio.create_task(self.quotes.run(self._stop), name="console-quotes")
        log.info("console listening", extra={"address": f"{self.settings.console_host}:{self.port}"})
        return self.port

    async def stop(self) -> None:
        self._stop.set()
        self.quote_fanout.publish(None)  # ends open event streams
        self.feed.publish(None)
        if self._quotes_task:
            self._quotes_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._quotes_task
        if self.runner:
            await self.runner.cleanup()
        await self.quotes.close()
        await self.analysis_channel.close()

    # ---- middlewares -----------------------------------------------------------------------------

    @web.middleware
    async def _security_headers(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
            if request.path.startswith("/api/") or request.path in ("/", "/login"):
                response.headers["Cache-Control"] = "no-store"
        return response

    async def _identify(self, request: web.Request) -> tuple[Identity | None, str | None]:
        """(identity, a new session token to set) from the trusted SSO header or the session cookie."""
        cookie = request.cookies.get(SESSION_COOKIE, "")
        identity = await self.sessions.lookup(cookie) if cookie else None
        header = self.settings.sso_header
        if header and request.remote in self.sso_proxies and request.headers.get(header):
            name = request.headers[header].strip()
            if identity is not None and identity.name == name:
                return identity, None
            account = await self.accounts.get(name)
            if account is None:
                return None, None
            token, identity = await self.sessions.open(account.name, account.role, via="sso")
            return identity, token
        return identity, None

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in ("/login", "/logout") or request.path.startswith("/static/"):
            return await handler(request)
        identity, new_token = await self._identify(request)
        if identity is None:
            if request.path.startswith("/api/"):
                return _json_error(401, "not logged in")
            raise web.HTTPSeeOther("/login")
        if request.method == "POST":
            problem = self._csrf_problem(request, identity)
            if problem:
                return _json_error(403, problem)
        request[IDENTITY] = identity
        response = await handler(request)
        if new_token:
            self._set_session_cookie(response, new_token)
        return response

    def _csrf_problem(self, request: web.Request, identity: Identity) -> str:
        origin = request.headers.get("Origin")
        if origin and origin != f"{request.scheme}://{request.host}":
            return f"cross-origin request from {origin} refused"
        if not same_secret(request.headers.get("X-CSRF-Token", ""), identity.csrf):
            return "missing or wrong CSRF token: reload the console"
        return ""

    def _set_session_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=self.settings.session_ttl_s,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.settings.cookie_secure,
        )

    # ---- pages -----------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=self._pages["index.html"], content_type="text/html")

    def _login_form(self, error: str = "", status: int = 200, name: str = "") -> web.Response:
        csrf = secrets.token_urlsafe(24)
        page = (
            self._pages["login.html"]
            .replace("{{csrf}}", csrf)
            .replace("{{name}}", html.escape(name, quote=True))
            .replace("{{error}}", html.escape(error))
            .replace("{{error_class}}", "error" if error else "error hidden")
        )
        response = web.Response(text=page, content_type="text/html", status=status)
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            csrf,
            max_age=3600,
            path="/login",
            httponly=True,
            samesite="Strict",
            secure=self.settings.cookie_secure,
        )
        return response

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        identity, _ = await self._identify(request)
        if identity is not None:
            raise web.HTTPSeeOther("/")
        return self._login_form()

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name = str(form.get("name", "")).strip()[:64]
        password = str(form.get("password", ""))
        if not same_secret(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            return self._login_form("The login form expired; try again.", 403, name)
        if await self.sessions.locked_out(name):
            return self._login_form("Too many failed attempts; wait and try again.", 429, name)
        account = await self.accounts.verify(name, password) if name and password else None
        if account is None:
            await self.sessions.record_failure(name)
            log.warning("console login failed", extra={"trader": name, "remote": request.remote})
            return self._login_form("Wrong name or password.", 401, name)
        await self.sessions.clear_failures(name)
        token, _ = await self.sessions.open(account.name, account.role)
        log.info("console login", extra={"trader": account.name, "remote": request.remote})
        response = web.HTTPSeeOther("/")
        self._set_session_cookie(response, token)
        response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(SESSION_COOKIE, "")
        identity = await self.sessions.lookup(token) if token else None
        if identity is not None:
            if not same_secret(request.headers.get("X-CSRF-Token", ""), identity.csrf):
                return _json_error(403, "missing or wrong CSRF token")
            await self.sessions.close(token)
        response = web.json_response({"ok": True})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # ---- API -------------------------------------------------------------------------------------

    async def _snapshot(self, identity: Identity) -> dict[str, Any]:
        pending, history = await asyncio.gather(self.store.pending(), self.store.history(HISTORY_SHOWN))
        s = self.settings
        return {
            "me": {"name": identity.name, "role": identity.role, "csrf": identity.csrf},
            "pending": [signal_view(x) for x in pending],
            "history": [signal_view(x) for x in history],
            "quotes": list(self.quotes.latest.values()),
            "quoting": self.quotes.status.view(),
            "caps": {
                "max_widening_bps": s.max_widening_bps,
                "max_skew_bps": s.max_skew_bps,
                "max_horizon_minutes": s.max_horizon_minutes,
                "max_vol_multiplier": s.max_vol_multiplier,
            },
            "expiry_s": s.expiry_s,
            "server_time_ms": int(time.time() * 1000),
        }

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(await self._snapshot(request[IDENTITY]))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `snapshot` first, then `signal`, `quote`, `quoting`, `audit`."""
        identity: Identity = request[IDENTITY]
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", **SECURITY_HEADERS}
        )
        response.headers["X-Accel-Buffering"] = "no"
        await response.prepare(request)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        token = request.cookies.get(SESSION_COOKIE, "")
        async with self.feed.subscribe(queue), self.quote_fanout.subscribe(queue):
            await response.write(b"retry: 1000\n\n" + _sse("snapshot", await self._snapshot(identity)))
            while not self._stop.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    if identity.via != "sso" and await self.sessions.lookup(token) is None:
                        await response.write(_sse("logout", {}))
                        break
                    await response.write(b": ping\n\n")
                    continue
                if item is None:
                    break
                frame = self._frame(item)
                if frame:
                    try:
                        await response.write(frame)
                    except (ConnectionResetError, RuntimeError):
                        break
        return response

    def _frame(self, item: Any) -> bytes:
        if isinstance(item, AuditEvent):
            if item.event == EVENT_KILL_SWITCH:
                return _sse(
                    "audit", {"event": item.event, "actor": item.actor, "at_ms": item.at_ms, **item.after}
                )
            if item.signal is None:
                return b""
            kind = "expired" if item.event == "signal.expired" else EVENT_KINDS.get(item.event)
            return _sse("signal", {"kind": kind, "signal": signal_view(item.signal)}) if kind else b""
        if isinstance(item, QuoteUpdate):
            return _sse("quote", item.view)
        if isinstance(item, QuotingStatus):
            return _sse("quoting", item.view())
        return b""

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidArgument("the request body must be JSON") from None
        if not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object")
        return body

    async def decide(self, request: web.Request) -> web.Response:
        identity: Identity = request[IDENTITY]
        try:
            body = await self._body(request)
            action = ACTIONS.get(str(body.get("action", "")))
            if action is None:
                raise InvalidArgument(f"action must be one of {', '.join(ACTIONS)}")
            decide = approval_pb2.DecideRequest(
                signal_id=str(body.get("signal_id", "")), action=action, reason=str(body.get("reason", ""))
            )
            for edit in body.get("modified") or []:
                try:
                    decide.modified.add(
                        asset=str(edit["asset"]),
                        widening_bps=float(edit.get("widening_bps", 0)),
                        skew_bps=float(edit.get("skew_bps", 0)),
                        horizon_minutes=int(edit.get("horizon_minutes", 0)),
                        vol_multiplier=float(edit.get("vol_multiplier", 0) or 0),
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise InvalidArgument(f"bad modified adjustment {edit!r}: {exc}") from None
            signal = await self.desk.decide(identity, decide)
        except ServiceError as exc:
            return _json_error(HTTP_STATUS.get(exc.code, 500), str(exc))
        return web.json_response({"signal": signal_view(signal)})

    async def kill_switch(self, request: web.Request) -> web.Response:
        identity: Identity = request[IDENTITY]
        try:
            identity.require_trader("use the kill switch")
            body = await self._body(request)
        except ServiceError as exc:
            return _json_error(HTTP_STATUS.get(exc.code, 500), str(exc))
        reason = str(body.get("reason", "")).strip()[:300] or "kill switch from the console"
        now = int(time.time() * 1000)
        before = {"quotes": list(self.quotes.latest.values())}
        try:
            cleared = await self.quotes.clear_all(f"{identity.name}: {reason}")
        except QuotingUnavailable as exc:
            await self.store.record(
                EVENT_KILL_SWITCH,
                identity.name,
                now,
                before,
                {"ok": False, "reason": reason, "error": str(exc)},
            )
            return _json_error(503, str(exc))
        await self.store.record(
            EVENT_KILL_SWITCH, identity.name, now, before, {"ok": True, "reason": reason, "cleared": cleared}
        )
        log.warning("kill switch", extra={"trader": identity.name, "reason": reason, "cleared": cleared})
        return web.json_response({"cleared": cleared})

    async def ask(self, request: web.Request) -> web.StreamResponse:
        """Stream AnalysisService.Ask as NDJSON lines: {text, citations} ... or {error}."""
        try:
            body = await self._body(request)
        except ServiceError as exc:
            return _json_error(400, str(exc))
        question = str(body.get("question", "")).strip()
        if not 1 <= len(question) <= 500:
            return _json_error(400, "the question must have 1 to 500 characters")
        hours = self.settings.ask_window_hours
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        call = self.analysis.Ask(
            analysis_pb2.AskRequest(question=question, window=Duration(seconds=int(hours * 3600))), timeout=60
        )
        try:
            async for chunk in call:
                line = {
                    "text": chunk.text,
                    "citations": [
                        {
                            "story_id": c.story_id,
                            "author": c.author,
                            "published_at_ms": ms(c.published_at),
                            "text": c.text,
                        }
                        for c in chunk.citations
                    ],
                }
                await response.write(json.dumps(line).encode() + b"\n")
        except grpc.aio.AioRpcError as exc:
            reason = (
                "the analysis service is not reachable"
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED)
                else f"{exc.code().name}: {exc.details()}"
            )
            await response.write(json.dumps({"error": f"search unavailable: {reason}"}).encode() + b"\n")
        finally:
            call.cancel()
        await response.write_eof()
        return response


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
