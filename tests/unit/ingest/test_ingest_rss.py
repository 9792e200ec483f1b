import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from services.ingest.normalize import validate
from services.ingest.sources import make_source
from services.ingest.sources.rss import RssConfig, RssSource
from tapewatch.news.v1 import news_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
RSS = (FIXTURES / "feed_rss.xml").read_bytes()
ATOM = (FIXTURES / "feed_atom.xml").read_bytes()
LAST_MODIFIED = "Fri, 21 Feb 2025 16:02:31 GMT"
NEW_ITEM = b"""<item>
      <title>Bybit Says It Has Closed the ETH Gap With Bridge Loans</title>
      <link>https://www.coindesk.com/business/2025/02/22/bybit-closes-eth-gap</link>
      <guid isPermaLink="false">a6e1c7b2-3f41-4c55-9b1e-6f2d8a0c1e03</guid>
      <pubDate>Sat, 22 Feb 2025 09:00:00 +0000</pubDate>
      <description>Reserves are back to 1:1, the exchange said.</description>
    </item>
    """


@dataclass
class Feeds:
    """A local feed server: ETag on the RSS feed, Last-Modified on the Atom feed, a broken path."""

    rss: bytes = RSS
    statuses: list[int] = field(default_factory=list)
    answered: asyncio.Condition = field(default_factory=asyncio.Condition)
    conditional: list[dict[str, str]] = field(default_factory=list)
    server: BaseTestServer | None = None

    async def serve_rss(self, request: web.Request) -> web.Response:
        etag = '"' + hashlib.sha256(self.rss).hexdigest()[:16] + '"'
        self.conditional.append({k: v for k, v in request.headers.items() if k.startswith("If-")})
        status = 304 if request.headers.get("If-None-Match") == etag else 200
        async with self.answered:
            self.statuses.append(status)
            self.answered.notify_all()
        body = None if status == 304 else self.rss
        return web.Response(
            status=status, body=body, headers={"ETag": etag}, content_type="application/rss+xml"
        )

    async def serve_atom(self, request: web.Request) -> web.Response:
        if request.headers.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304)
        return web.Response(
            body=ATOM, headers={"Last-Modified": LAST_MODIFIED}, content_type="application/atom+xml"
        )

    async def serve_broken(self, request: web.Request) -> web.Response:
        return web.Response(status=502, text="bad gateway")

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))


@pytest.fixture
async def feeds() -> AsyncIterator[Feeds]:
    feeds = Feeds()
    app = web.Application()
    app.router.add_get("/rss.xml", feeds.serve_rss)
    app.router.add_get("/atom.xml", feeds.serve_atom)
    app.router.add_get("/broken", feeds.serve_broken)
    async with TestServer(app, host="127.0.0.1") as server:
        feeds.server = server
        yield feeds


async def test_rss_entries_once_and_etag_honoured(feeds: Feeds) -> None:
    source = RssSource(RssConfig(url=feeds.url("/rss.xml"), source="coindesk"))
    try:
        first = await source.poll()
        again = await source.poll()
    finally:
        await source.close()

    assert [i.source_item_id[-4:] for i in first] == ["0f77", "1e01", "1e02"]  # oldest first
    etf, hack, slide = first
    assert (hack.source, hack.platform, hack.author) == ("coindesk", news_pb2.PLATFORM_RSS, "Oliver Knight")
    assert hack.published_at.ToJsonString() == "2025-02-21T15:12:00Z"
    assert hack.text == (
        "Bybit Hacked for $1.4B in Ether, the Largest Crypto Theft Ever. An attacker took control of an"
        " ETH cold wallet & moved the funds to an unknown address.\nCEO Ben Zhou said withdrawals are"
        " processing normally."
    )
    assert hack.url.endswith("bybit-hacked-for-1-4b-in-eth") and hack.language == "en"
    assert hack.attributes["tags"] == "Markets,Security"
    assert etf.published_at.ToJsonString() == "2024-01-10T21:15:00Z" and slide.author == "Omkar Godbole"
    assert again == []
    assert feeds.statuses == [200, 304]
    assert feeds.conditional[0] == {} and feeds.conditional[1]["If-None-Match"].startswith('"')


async def test_atom_and_last_modified(feeds: Feeds) -> None:
    source = make_source("rss", url=feeds.url("/atom.xml"), platform="exchange")
    assert isinstance(source, RssSource)
    try:
        items = await source.poll()
        assert await source.poll() == []  # 304 on If-Modified-Since
    finally:
        await source.close()

    maintenance, incident = items
    assert incident.source_item_id == "tag:status.kraken.com,2005:Incident/23718412"
    assert (incident.source, incident.platform, incident.author) == (
        "127.0.0.1",
        news_pb2.PLATFORM_EXCHANGE,
        "Kraken",
    )
    assert incident.text == (
        "ETH and ERC-20 funding delayed. Investigating - ETH and ERC-20 deposits and withdrawals are delayed "
        "while we review activity related to the Bybit incident."
    )
    assert maintenance.published_at.ToJsonString() == "2025-02-20T07:00:00Z"  # +01:00 in the feed
    assert incident.url == "https://status.kraken.com/incidents/7yl1ptn0m3qv" and incident.language == "en-US"
    now = datetime(2025, 3, 1, tzinfo=UTC)
    assert all(validate(i, now).id for i in items)


async def test_poller_yields_only_new_entries(feeds: Feeds) -> None:
    source = RssSource(RssConfig(url=feeds.url("/rss.xml"), interval=0.02))
    stream = source.items()
    try:
        first = [await asyncio.wait_for(anext(stream), 2) for _ in range(3)]
        pending = asyncio.ensure_future(anext(stream))
        async with feeds.answered:  # polls go on, the unchanged feed is answered 304
            await asyncio.wait_for(feeds.answered.wait_for(lambda: feeds.statuses.count(304) >= 2), 2)
        feeds.rss = RSS.replace(b"<item>", NEW_ITEM + b"<item>", 1)  # a new entry, a new ETag
        new = await asyncio.wait_for(pending, 2)
    finally:
        await source.close()

    assert len({i.source_item_id for i in first}) == 3 and first[0].source == "127.0.0.1"
    assert new.text.startswith("Bybit Says It Has Closed the ETH Gap") and new.source_item_id.endswith("1e03")
    assert [i async for i in stream] == []  # closed: the poller ends
    assert feeds.statuses.count(200) == 2  # the whole feed was sent once before and once after the change


async def test_failed_poll_is_logged_and_retried(feeds: Feeds, caplog: pytest.LogCaptureFixture) -> None:
    source = RssSource(RssConfig(url=feeds.url("/broken"), interval=0.01))
    stream = source.items()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 0.2)
    await source.close()
    assert "502" in caplog.text and caplog.text.count("poll of") >= 2
