"""The trader console over real HTTP (aiohttp client) against a running approval process: log-in, session
cookie flags, CSRF, roles, live events, SSO header trust, and graceful degradation without quoting or
analysis."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import redis.asyncio as aioredis

from services.approval.auth import hash_password
from services.approval.samples import sample_signal
from services.approval.service import ApprovalApp
from services.approval.settings import ApprovalSettings
from services.approval.store import SignalStore
from services.bench.console import sse_events
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.server import GrpcServer, Registration
from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2, analysis_pb2_grpc

pytestmark = pytest.mark.integration
PASSWORDS = {"alice": "amber-Falcon-42-river", "vera": "quiet-Heron-17-stone"}


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(pw) for name, pw in PASSWORDS.items()}


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def app(
    redis: aioredis.Redis, redis_stack: RedisStack, hashes: dict[str, str], overrides: dict[str, Any]
) -> AsyncIterator[ApprovalApp]:
    settings = ApprovalSettings.load(
        redis_url=redis_stack.url,
        approval_addr="127.0.0.1:0",
        console_addr="127.0.0.1:0",
        quoting_addr=f"127.0.0.1:{free_port()}",  # nothing listens: the console must cope
        analysis_addr=f"127.0.0.1:{free_port()}",
        log_format="text",
        login_max_failures=3,
        traders=[
            {"name": "alice", "password_hash": hashes["alice"]},
            {"name": "vera", "password_hash": hashes["vera"], "role": "viewer"},
        ],
        **overrides,
    )
    app = ApprovalApp(settings, redis, "console-test")
    await app.start()
    yield app
    await app.stop()


def base(app: ApprovalApp) -> str:
    return f"http://127.0.0.1:{app.console_port}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def login(
    http: aiohttp.ClientSession, app: ApprovalApp, name: str, password: str
) -> aiohttp.ClientResponse:
    async with http.get(base(app) + "/login") as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert csrf
    async with http.post(
        base(app) + "/login",
        data={"name": name, "password": password, "csrf": csrf.group(1)},
        allow_redirects=False,
    ) as response:
        await response.read()
        return response


async def state(http: aiohttp.ClientSession, app: ApprovalApp) -> dict[str, Any]:
    async with http.get(base(app) + "/api/state") as response:
        assert response.status == 200
        return dict(await response.json())


async def test_pages_need_a_login_and_cookies_are_locked_down(
    app: ApprovalApp, http: aiohttp.ClientSession
) -> None:
    async with http.get(base(app) + "/", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/login"
    async with http.get(base(app) + "/api/state") as r:
        assert r.status == 401
    async with http.get(base(app) + "/api/events") as r:
        assert r.status == 401
    bad = await login(http, app, "alice", "not-her-password-at-all")
    assert bad.status == 401 and "tw_session" not in bad.cookies
    good = await login(http, app, "alice", PASSWORDS["alice"])
    assert good.status == 303
    cookie = good.headers["Set-Cookie"]
    assert "tw_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = (await state(http, app))["me"]
    assert (me["name"], me["role"]) == ("alice", "trader") and len(me["csrf"]) >= 24
    async with http.get(base(app) + "/") as r:
        assert r.status == 200 and "script-src" not in r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]


async def test_login_is_locked_after_repeated_failures(app: ApprovalApp, http: aiohttp.ClientSession) -> None:
    for _ in range(3):
        assert (await login(http, app, "alice", "wrong-password-guess")).status == 401
    assert (await login(http, app, "alice", PASSWORDS["alice"])).status == 429


async def test_login_form_needs_its_csrf_cookie(app: ApprovalApp, http: aiohttp.ClientSession) -> None:
    async with http.post(
        base(app) + "/login", data={"name": "alice", "password": PASSWORDS["alice"], "csrf": "forged"},
        allow_redirects=False,
    ) as r:  # fmt: skip
        assert r.status == 403


async def test_posts_need_the_csrf_token_and_same_origin(
    app: ApprovalApp, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    await login(http, app, "alice", PASSWORDS["alice"])
    csrf = (await state(http, app))["me"]["csrf"]
    await publish(redis, "signals.pending", sample_signal("sig-1").SerializeToString(), "sig-1")
    await _wait_pending(http, app, "sig-1")
    body = {"signal_id": "sig-1", "action": "APPROVE"}
    async with http.post(base(app) + "/api/decide", json=body) as r:
        assert r.status == 403 and "CSRF" in (await r.json())["error"]
    headers = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    async with http.post(base(app) + "/api/decide", json=body, headers=headers) as r:
        assert r.status == 403 and "cross-origin" in (await r.json())["error"]
    assert await redis.xlen("signals.approved") == 0
    async with http.post(base(app) + "/api/decide", json=body, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 200
        decided = (await r.json())["signal"]
    assert decided["state"] == "APPROVED" and decided["decision"]["trader"] == "alice"
    async with http.post(base(app) + "/api/decide", json=body, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 409 and "already approved by alice" in (await r.json())["error"]
    assert await redis.xlen("signals.approved") == 1


async def _wait_pending(http: aiohttp.ClientSession, app: ApprovalApp, signal_id: str) -> None:
    deadline = time.monotonic() + 10
    while signal_id not in [s["id"] for s in (await state(http, app))["pending"]]:
        assert time.monotonic() < deadline, f"{signal_id} never became pending"
        await asyncio.sleep(0.05)


async def test_viewer_sees_but_cannot_decide_or_kill(
    app: ApprovalApp, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    await login(http, app, "vera", PASSWORDS["vera"])
    csrf = (await state(http, app))["me"]["csrf"]
    await publish(redis, "signals.pending", sample_signal("sig-1").SerializeToString(), "sig-1")
    await _wait_pending(http, app, "sig-1")
    headers = {"X-CSRF-Token": csrf}
    async with http.post(
        base(app) + "/api/decide", json={"signal_id": "sig-1", "action": "APPROVE"}, headers=headers
    ) as r:
        assert r.status == 403 and "viewer" in (await r.json())["error"]
    async with http.post(base(app) + "/api/kill-switch", json={"reason": "x"}, headers=headers) as r:
        assert r.status == 403


async def test_event_stream_sends_snapshot_then_new_and_decided_signals(
    app: ApprovalApp, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    await login(http, app, "alice", PASSWORDS["alice"])
    async with http.get(base(app) + "/api/events") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(response)
        kind, snapshot = await anext(events)
        assert kind == "snapshot" and snapshot["pending"] == [] and snapshot["quoting"]["up"] is False
        csrf = snapshot["me"]["csrf"]
        await publish(redis, "signals.pending", sample_signal("sig-1").SerializeToString(), "sig-1")
        kind, doc = await asyncio.wait_for(_next_signal(events), 5)
        assert doc["kind"] == "new" and doc["signal"]["id"] == "sig-1"
        assert doc["signal"]["story"]["echo_count"] == 7 and doc["signal"]["impact"]["rationale"]
        async with http.post(
            base(app) + "/api/decide",
            json={"signal_id": "sig-1", "action": "MARK_DUPLICATE", "reason": "seen at 09:12"},
            headers={"X-CSRF-Token": csrf},
        ) as r:
            assert r.status == 200
        kind, doc = await asyncio.wait_for(_next_signal(events), 5)
        assert doc["kind"] == "decided" and doc["signal"]["state"] == "REJECTED"
        assert doc["signal"]["decision"]["action"] == "MARK_DUPLICATE"


async def _next_signal(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    async for kind, doc in events:
        if kind == "signal":
            return kind, doc
    raise AssertionError("event stream ended")


async def test_kill_switch_and_search_degrade_without_their_services(
    app: ApprovalApp, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    await login(http, app, "alice", PASSWORDS["alice"])
    headers = {"X-CSRF-Token": (await state(http, app))["me"]["csrf"]}
    async with http.post(base(app) + "/api/kill-switch", json={"reason": "drill"}, headers=headers) as r:
        assert r.status == 503 and "kill switch not applied" in (await r.json())["error"]
    [event] = [e for e in await SignalStore(redis).audit_log() if e.event == "quoting.kill_switch"]
    assert event.actor == "alice" and event.after["ok"] is False and event.after["reason"] == "drill"
    async with http.post(base(app) + "/api/ask", json={"question": "what hit BTC?"}, headers=headers) as r:
        assert r.status == 200
        lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert lines == [{"error": "search unavailable: the analysis service is not reachable"}]


@pytest.mark.parametrize("overrides", [{"sso_header": "X-Forwarded-User", "sso_proxies": ["127.0.0.1"]}])
async def test_sso_header_from_the_trusted_proxy_logs_a_known_trader_in(
    app: ApprovalApp, http: aiohttp.ClientSession
) -> None:
    async with http.get(base(app) + "/api/state", headers={"X-Forwarded-User": "alice"}) as r:
        assert r.status == 200 and (await r.json())["me"]["name"] == "alice"
        assert "HttpOnly" in r.headers["Set-Cookie"]
    async with http.get(base(app) + "/api/state", headers={"X-Forwarded-User": "mallory"}) as r:
        assert r.status == 401


@pytest.mark.parametrize("overrides", [{"sso_header": "X-Forwarded-User", "sso_proxies": ["10.9.9.9"]}])
async def test_sso_header_from_anywhere_else_is_ignored(
    app: ApprovalApp, http: aiohttp.ClientSession
) -> None:
    async with http.get(base(app) + "/api/state", headers={"X-Forwarded-User": "alice"}) as r:
        assert r.status == 401


class StoryDesk(analysis_pb2_grpc.AnalysisServiceServicer):
    """Answers Ask in two chunks, citing one story, as the analysis service streams."""

    async def Ask(
        self, request: analysis_pb2.AskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[analysis_pb2.AskChunk]:
        citation = analysis_pb2.Citation(
            story_id="story-7", author="binance", text="Binance pauses withdrawals"
        )
        citation.published_at.FromMilliseconds(1_700_000_000_000)
        assert request.window.seconds == 24 * 3600
        yield analysis_pb2.AskChunk(text=f"On '{request.question}': ", citations=[citation])
        yield analysis_pb2.AskChunk(text="the Binance withdrawal pause.")


async def test_search_streams_the_answer_with_citations(
    app: ApprovalApp, http: aiohttp.ClientSession
) -> None:
    add = analysis_pb2_grpc.add_AnalysisServiceServicer_to_server
    analysis = GrpcServer(
        "analysis-test",
        app.settings.analysis_addr,
        [Registration("tapewatch.analysis.v1.AnalysisService", add, StoryDesk())],
    )
    await analysis.start()
    try:
        await login(http, app, "vera", PASSWORDS["vera"])  # viewers may search
        headers = {"X-CSRF-Token": (await state(http, app))["me"]["csrf"]}
        async with http.post(
            base(app) + "/api/ask", json={"question": "what hit BTC?"}, headers=headers
        ) as r:
            lines = [json.loads(line) for line in (await r.text()).splitlines()]
    finally:
        await analysis.stop(0)
    assert "".join(line["text"] for line in lines) == "On 'what hit BTC?': the Binance withdrawal pause."
    assert lines[0]["citations"] == [
        {"story_id": "story-7", "author": "binance", "published_at_ms": 1_700_000_000_000,
         "text": "Binance pauses withdrawals"}
    ]  # fmt: skip
