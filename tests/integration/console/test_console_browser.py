"""Acceptance: a trader in headless Chromium (Debian's, driven by Playwright) logs in, sees signals arrive
without reloading, approves one and modifies another from the keyboard, and sees the quote adjustments
appear. The quoting side is a small real QuotingService on loopback that follows signals.approved, as
the quoting adapter does. Saves artifacts/console.png."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, async_playwright, expect

from quoting.adjustments import Caps, SignalAdjustment, combine
from services.approval.auth import hash_password
from services.approval.samples import sample_signal
from services.approval.service import ApprovalApp
from services.approval.settings import ApprovalSettings
from services.approval.store import SignalStore
from services.bench.console import CHROMIUM, CHROMIUM_FLAGS
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.server import GrpcServer, Registration
from services.runtime.streams import publish
from tapewatch.approval.v1 import approval_pb2
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PASSWORD = "amber-Falcon-42-river"
CAPS = Caps(max_widening_bps=50, max_vol_multiplier=3, max_skew_bps=30)


class FollowingQuoting(quoting_pb2_grpc.QuotingServiceServicer):
    """Reads signals.approved and serves the combined params per asset; ClearAll returns all to base."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.signals: list[SignalAdjustment] = []
        self.kill = False
        self.changed = asyncio.Condition()

    def params(self, asset: str) -> quoting_pb2.QuoteParams:
        now = datetime.now(UTC)
        adj = combine(asset, self.signals, now, CAPS, kill_switch=self.kill)
        p = quoting_pb2.QuoteParams(
            asset=asset,
            spread_multiplier=adj.spread_multiplier,
            bid_widening_bps=adj.bid_widening_bps,
            ask_widening_bps=adj.ask_widening_bps,
            skew_bps=adj.skew_bps,
            signal_ids=list(adj.signal_ids),
            kill_switch=adj.kill_switch,
        )
        p.as_of.FromDatetime(now)
        if adj.valid_until:
            p.valid_until.FromDatetime(adj.valid_until)
        return p

    async def follow(self) -> None:
        last = "0-0"
        while True:
            for _, entries in await self.redis.xread({"signals.approved": last}, block=1000) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    signal = approval_pb2.Signal.FromString(fields[b"data"])
                    started = signal.decision.decided_at.ToDatetime(tzinfo=UTC)
                    for a in signal.adjustments:
                        self.signals.append(
                            SignalAdjustment(signal.id, a.asset, a.widening_bps, a.skew_bps, a.vol_multiplier,
                                             started, timedelta(minutes=a.horizon_minutes), "linear")
                        )  # fmt: skip
                    async with self.changed:
                        self.changed.notify_all()

    async def WatchQuoteParams(
        self, request: quoting_pb2.WatchQuoteParamsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[quoting_pb2.QuoteParams]:
        while True:
            for asset in sorted({s.asset for s in self.signals}):
                yield self.params(asset)
            async with self.changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 1.0)  # a decay step a second

    async def ClearAll(
        self, request: quoting_pb2.ClearAllRequest, context: grpc.aio.ServicerContext
    ) -> quoting_pb2.ClearAllResponse:
        self.kill = True
        async with self.changed:
            self.changed.notify_all()
        return quoting_pb2.ClearAllResponse(cleared=len({s.asset for s in self.signals}))


@pytest.fixture
async def quoting(redis: aioredis.Redis) -> AsyncIterator[str]:
    servicer = FollowingQuoting(redis)
    address = f"127.0.0.1:{free_port()}"
    add = quoting_pb2_grpc.add_QuotingServiceServicer_to_server
    server = GrpcServer(
        "quoting-test", address, [Registration("tapewatch.quoting.v1.QuotingService", add, servicer)]
    )
    await server.start()
    follower = asyncio.create_task(servicer.follow())
    yield address
    follower.cancel()
    await server.stop(0)


@pytest.fixture
async def app(redis: aioredis.Redis, redis_stack: RedisStack, quoting: str) -> AsyncIterator[ApprovalApp]:
    settings = ApprovalSettings.load(
        redis_url=redis_stack.url,
        approval_addr="127.0.0.1:0",
        console_addr="127.0.0.1:0",
        quoting_addr=quoting,
        analysis_addr=f"127.0.0.1:{free_port()}",
        log_format="text",
        traders=[{"name": "alice", "password_hash": hash_password(PASSWORD)}],
    )
    app = ApprovalApp(settings, redis, "browser-test")
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = await browser.new_context(viewport={"width": 1920, "height": 1080}, device_scale_factor=1)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        await browser.close()
        assert errors == [], f"JavaScript errors on the page: {errors}"


async def test_trader_approves_from_the_keyboard_and_sees_the_quote_change(
    app: ApprovalApp, page: Page, redis: aioredis.Redis, request: pytest.FixtureRequest
) -> None:
    url = f"http://127.0.0.1:{app.console_port}"
    await page.goto(url + "/")
    await expect(page).to_have_url(url + "/login")
    await page.fill("#name", "alice")
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#feed-status")).to_have_text("FEED live")
    await expect(page.locator("#pending-empty")).to_be_visible()
    await expect(page.locator("#quoting-status")).to_have_text("QUOTING live")
    await page.evaluate("window.__sameDocument = true")

    for n, signal_id in enumerate(("sig-hack", "sig-etf", "sig-fed")):
        await publish(redis, "signals.pending", sample_signal(signal_id, n).SerializeToString(), signal_id)
    cards = page.locator(".signal")
    await expect(cards).to_have_count(3)
    assert await page.evaluate("window.__sameDocument") is True  # arrived live, no reload
    await expect(cards.first).to_contain_text("Binance pauses withdrawals")
    await expect(cards.first).to_have_class(re.compile(r"\bbearish\b.*\bselected\b"))

    await page.keyboard.press("a")  # approve the selected (first) signal
    await expect(page.locator('.signal[data-id="sig-hack"]')).to_have_count(0)
    btc = page.locator('#quotes-body tr[data-asset="BTC"]')
    await expect(btc).to_be_visible()
    await expect(btc.locator("td").nth(1)).to_have_text("18.0")  # bid: 12 widening + 6 bearish skew
    await expect(page.locator('#quotes-body tr[data-asset="BNB"]')).to_be_visible()
    await expect(page.locator("#history-list li").first).to_contain_text("APPROVED")

    await page.keyboard.press("j")  # sig-etf was selected after the approval; j moves to sig-fed
    await page.keyboard.press("k")
    await expect(page.locator('.signal[data-id="sig-etf"]')).to_have_class(re.compile(r"\bselected\b"))
    await page.keyboard.press("m")
    dialog = page.locator("#modify-dialog")
    await expect(dialog).to_be_visible()
    await page.keyboard.type("60")  # the widening field is focused and selected: beyond the 50 bps cap
    await page.keyboard.press("Enter")
    await expect(page.locator("#modify-error")).to_contain_text("max_widening_bps")
    await dialog.locator('input[name="widening_bps"]').fill("20")
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    eth = page.locator('#quotes-body tr[data-asset="ETH"]')
    await expect(eth.locator("td").nth(2)).to_have_text("26.0")  # ask: 20 widening + 6 bullish skew
    await expect(page.locator("#history-list li").first).to_contain_text("MODIFIED")

    await publish(redis, "signals.pending", sample_signal("sig-hack-2", 0).SerializeToString(), "sig-hack-2")
    await expect(cards).to_have_count(2)
    await expect(page.locator('.signal[data-id="sig-fed"] .timer .secs')).to_have_text(
        re.compile(r"^1[01]\d$")
    )
    assert await page.evaluate("window.__sameDocument") is True

    approved = [approval_pb2.Signal.FromString(f[b"data"]) for _, f in await redis.xrange("signals.approved")]
    assert [(s.id, s.decision.trader, s.decision.action) for s in approved] == [
        ("sig-hack", "alice", approval_pb2.ACTION_APPROVE),
        ("sig-etf", "alice", approval_pb2.ACTION_MODIFY),
    ]
    assert approved[1].adjustments[0].widening_bps == 20
    events = [e.event for e in await SignalStore(redis).audit_log()]
    assert events.count("signal.approved") == 2 and events.count("signal.new") == 4

    for n, signal_id in ((3, "sig-usdt"), (4, "sig-sol")):  # a fuller desk for the screenshot
        await publish(redis, "signals.pending", sample_signal(signal_id, n).SerializeToString(), signal_id)
    await expect(cards).to_have_count(4)
    artifacts = request.config.rootpath / "artifacts"
    artifacts.mkdir(exist_ok=True)
    await page.mouse.move(0, 0)
    await page.screenshot(path=str(Path(artifacts) / "console.png"))

    await page.click("#kill")  # the kill switch asks first, then clears every asset
    await expect(page.locator("#kill-dialog")).to_be_visible()
    await page.fill("#kill-reason", "drill")
    await page.click("#kill-confirm")
    await expect(page.locator("#kill-dialog")).to_be_hidden()
    await expect(page.locator('#quotes-body tr[data-asset="BTC"] .flag.kill')).to_be_visible()
    [kill] = [e for e in await SignalStore(redis).audit_log() if e.event == "quoting.kill_switch"]
    assert (kill.actor, kill.after["ok"], kill.after["cleared"], kill.after["reason"]) == (
        "alice",
        True,
        3,
        "drill",
    )
