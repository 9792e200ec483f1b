"""The contract every source adapter keeps: one test class per adapter subclasses it and opens a source."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.ingest.normalize import validate
from services.ingest.sources import KINDS, Source, make_source
from services.ingest.sources.webhook import WebhookSource
from tapewatch.news.v1 import news_pb2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
NOW = datetime.now(UTC)


class SourceContract:
    kind: str

    async def open(self, tmp_path: Path, stack: contextlib.AsyncExitStack) -> Source:
        """A source of this kind that will produce at least one item."""
        raise NotImplementedError

    @pytest.fixture
    async def source(self, tmp_path: Path) -> AsyncIterator[Source]:
        async with contextlib.AsyncExitStack() as stack:
            source = await self.open(tmp_path, stack)
            yield source
            await source.close()

    def test_is_a_source(self, source: Source) -> None:
        assert isinstance(source, Source) and isinstance(source, KINDS[self.kind][1])
        assert isinstance(source.name, str) and source.name

    async def test_items_pass_validation(self, source: Source) -> None:
        item = await asyncio.wait_for(anext(source.items()), 5)
        assert isinstance(item, news_pb2.NewsItem)
        assert validate(item, NOW).id.startswith("nw_")

    async def test_close_ends_items_and_is_idempotent(self, source: Source) -> None:
        stream = source.items()
        await asyncio.wait_for(anext(stream), 5)
        await source.close()
        await source.close()
        rest = await asyncio.wait_for(_drain(stream), 5)
        assert all(isinstance(i, news_pb2.NewsItem) for i in rest)

    def test_unknown_config_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no_such_option"):
            make_source(self.kind, no_such_option=1)


async def _drain(stream: AsyncIterator[news_pb2.NewsItem]) -> list[news_pb2.NewsItem]:
    return [i async for i in stream]


class TestCsvReplaySource(SourceContract):
    kind = "csv"

    async def open(self, tmp_path: Path, stack: contextlib.AsyncExitStack) -> Source:
        path = tmp_path / "news.csv"
        path.write_text(
            "Datetime,Tweet Id,Text,reply count,retweet count,like count\n"
            "2021-02-04 08:27:00+00:00,1357241340313141249,Dogecoin is the people’s crypto,1,2,3\n"
            "2021-02-04 09:27:00+00:00,1357241340313141250,No highs no lows only Doge,1,2,3\n",
            encoding="utf-8",
        )
        return make_source("csv", path=path, speed=3600 * 10)


class TestRssSource(SourceContract):
    kind = "rss"

    async def open(self, tmp_path: Path, stack: contextlib.AsyncExitStack) -> Source:
        async def feed(request: web.Request) -> web.Response:
            return web.Response(
                body=(FIXTURES / "feed_rss.xml").read_bytes(), content_type="application/rss+xml"
            )

        app = web.Application()
        app.router.add_get("/rss", feed)
        server = await stack.enter_async_context(TestServer(app, host="127.0.0.1"))
        return make_source("rss", url=str(server.make_url("/rss")), interval=0.05)


class TestWebhookSource(SourceContract):
    kind = "webhook"

    async def open(self, tmp_path: Path, stack: contextlib.AsyncExitStack) -> Source:
        source = make_source("webhook", port=0)
        assert isinstance(source, WebhookSource)
        await source.start()
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                source.url,
                json={
                    "text": "Kraken pauses ETH deposits",
                    "source": "kraken-status",
                    "platform": "exchange",
                },
            ) as resp,
        ):
            assert resp.status == 202
        return source


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"^unknown source kind 'kafka' \(known: csv, rss, webhook\)$"):
        make_source("kafka")
