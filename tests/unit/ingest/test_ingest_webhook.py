import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.ingest.normalize import item_key
from services.ingest.sources import make_source
from services.ingest.sources.webhook import MAX_BODY, WebhookSource, make_webhook_app
from tapewatch.news.v1 import news_pb2

NOW = datetime(2025, 2, 21, 15, 30, tzinfo=UTC)
HACK = {
    "text": "Bybit: ETH cold wallet compromised, withdrawals open",
    "source": "bybit-status",
    "platform": "exchange",
    "author": "Bybit",
    "url": "https://announcements.bybit.com/incident-1",
    "published_at": "2025-02-21T15:12:00Z",
    "source_item_id": "incident-1",
    "attributes": {"severity": "critical", "assets": 2, "resolved": False},
}


@pytest.fixture
async def posted() -> AsyncIterator[tuple[TestClient, list[news_pb2.NewsItem]]]:
    received: list[news_pb2.NewsItem] = []

    async def on_item(item: news_pb2.NewsItem) -> None:
        received.append(item)

    async with TestClient(
        TestServer(make_webhook_app(on_item, clock=lambda: NOW), host="127.0.0.1")
    ) as client:
        yield client, received


async def test_accepts_one_item(posted: tuple[TestClient, list[news_pb2.NewsItem]]) -> None:
    client, received = posted

    resp = await client.post("/v1/news", json=HACK)

    assert resp.status == 202
    (item,) = received
    assert await resp.json() == {"ids": [item.id]} and item.id == item_key(item)
    assert (item.platform, item.source, item.author) == (news_pb2.PLATFORM_EXCHANGE, "bybit-status", "Bybit")
    assert item.published_at.ToJsonString() == "2025-02-21T15:12:00Z"
    assert item.received_at.ToDatetime(tzinfo=UTC) == NOW
    assert dict(item.attributes) == {"severity": "critical", "assets": "2", "resolved": "False"}


async def test_accepts_a_list_and_defaults_the_platform(
    posted: tuple[TestClient, list[news_pb2.NewsItem]],
) -> None:
    client, received = posted
    batch = [{"text": "SEC approves spot ether ETFs", "source": "desk"}, {**HACK, "platform": "Telegram"}]

    resp = await client.post("/v1/news", json=batch)

    assert resp.status == 202 and len((await resp.json())["ids"]) == 2
    assert [i.platform for i in received] == [news_pb2.PLATFORM_WEBHOOK, news_pb2.PLATFORM_TELEGRAM]


@pytest.mark.parametrize(
    ("body", "reason", "index"),
    [
        (b'{"text": "BTC', "invalid JSON: Unterminated string starting at: line 1 column 10 (char 9)", None),
        (b"\xff{}", "body is not valid UTF-8 (byte offset 0)", None),
        (b"[]", "empty list: nothing to publish", None),
        (
            {**HACK, "platform": "myspace"},
            "unknown platform 'myspace' (known: x, truth_social, reddit, telegram, "
            "discord, newswire, rss, exchange, regulator, webhook)",
            0,
        ),
        ({**HACK, "published_at": "21/02/2025"}, "published_at '21/02/2025' is not an ISO 8601 timestamp", 0),
        (
            {**HACK, "published_at": "2025-02-21T15:12:00"},
            "published_at '2025-02-21T15:12:00' has no UTC offset (e.g. 2024-01-10T21:11:00Z)",
            0,
        ),
        ([HACK, {**HACK, "text": "  "}], "text is empty after stripping whitespace", 1),
        ({**HACK, "source": ""}, "source is missing", 0),
        (
            {**HACK, "txt": "typo"},
            "unknown field(s) txt (known: attributes, author, language, platform, "
            "published_at, source, source_item_id, text, url)",
            0,
        ),
        ({**HACK, "text": 42}, "text must be a string, got int", 0),
        (
            {**HACK, "attributes": {"nested": {}}},
            "attributes must be an object of strings, numbers or booleans",
            0,
        ),
        ("just a string", "item must be a JSON object, got str", 0),
        (
            {**HACK, "published_at": "2025-02-23T15:12:00Z"},
            "published_at 2025-02-23T15:12:00Z is 47.7 h in the future"
            " (limit 24 h after 2025-02-21T15:30:00Z)",
            0,
        ),
    ],
)
async def test_rejects_with_a_reason(
    posted: tuple[TestClient, list[news_pb2.NewsItem]], body: object, reason: str, index: int | None
) -> None:
    client, received = posted
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    resp = await client.post("/v1/news", data=data, headers={"Content-Type": "application/json"})

    assert resp.status == 400
    expected = {"error": reason} if index is None else {"error": reason, "index": index}
    assert await resp.json() == expected
    assert received == []  # nothing of a refused request is handed on


async def test_rejects_lone_surrogates_in_json(posted: tuple[TestClient, list[news_pb2.NewsItem]]) -> None:
    client, _ = posted
    resp = await client.post("/v1/news", data=b'{"text": "BTC \\ud800", "source": "desk"}')
    assert resp.status == 400
    assert (await resp.json())["error"] == "text contains a lone surrogate U+D800 at index 4"


async def test_body_over_1_mib_is_413(posted: tuple[TestClient, list[news_pb2.NewsItem]]) -> None:
    client, received = posted
    big = json.dumps({**HACK, "text": "x" * MAX_BODY}).encode()

    resp = await client.post("/v1/news", data=io.BytesIO(big))  # sized: sends Content-Length
    assert resp.status == 413
    assert await resp.json() == {"error": f"body is {len(big):,} bytes, over the 1,048,576-byte limit"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(5):
            yield b" " * (256 * 1024)

    resp = await client.post("/v1/news", data=chunks())
    assert resp.status == 413
    assert await resp.json() == {"error": "body is over the 1,048,576-byte limit"}
    assert received == []


async def test_token_and_hand_on_failure() -> None:
    async def broken(item: news_pb2.NewsItem) -> None:
        raise ConnectionError("redis down")

    async with TestClient(TestServer(make_webhook_app(broken, token="s3cret"), host="127.0.0.1")) as client:
        resp = await client.post("/v1/news", json=HACK)
        assert resp.status == 401 and await resp.json() == {"error": "missing or wrong bearer token"}
        resp = await client.post("/v1/news", json=HACK, headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 503
        assert await resp.json() == {"error": "items could not be handed on (ConnectionError); retry"}


async def test_webhook_source_yields_what_was_posted() -> None:
    source = make_source("webhook", port=0, token="s3cret")
    assert isinstance(source, WebhookSource)
    await source.start()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer s3cret"}) as http:
            for n in range(3):
                async with http.post(source.url, json={**HACK, "source_item_id": f"incident-{n}"}) as resp:
                    assert resp.status == 202
        stream = source.items()
        got = [await asyncio.wait_for(anext(stream), 2) for _ in range(3)]
        assert [i.source_item_id for i in got] == ["incident-0", "incident-1", "incident-2"]
    finally:
        await source.close()
    assert [i async for i in stream] == []  # ends once closed and drained
    await source.close()  # twice is fine
