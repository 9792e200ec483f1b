"""IngestService on a real gRPC server (loopback) writing to a real Redis Stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from services.ingest.service import IngestServicer
from services.ingest.store import RawNewsStore
from services.runtime.interceptors import insecure_channel
from services.runtime.server import GrpcServer, Registration
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tapewatch.news.v1 import news_pb2

pytestmark = pytest.mark.integration


def make_item(text: str = "SEC approves spot ETH ETF", n: int = 1, **kw: object) -> news_pb2.NewsItem:
    item = news_pb2.NewsItem(
        source=str(kw.pop("source", "cointelegraph")),
        source_item_id=str(kw.pop("source_item_id", f"ct-{n}")),
        platform=int(kw.pop("platform", news_pb2.PLATFORM_NEWSWIRE)),  # type: ignore[arg-type]
        author="reporter",
        text=text,
    )
    item.published_at.FromDatetime(kw.pop("published_at", datetime.now(UTC) - timedelta(minutes=1)))  # type: ignore[arg-type]
    return item


@pytest.fixture
async def server(redis: aioredis.Redis) -> AsyncIterator[GrpcServer]:
    server = GrpcServer(
        "ingest",
        "127.0.0.1:0",
        [
            Registration(
                "tapewatch.ingest.v1.IngestService",
                ingest_pb2_grpc.add_IngestServiceServicer_to_server,
                IngestServicer(RawNewsStore(redis)),
            )
        ],
        checks={"redis": redis.ping},
    )
    await server.start()
    yield server
    await server.stop(0)


@pytest.fixture
async def ingest(server: GrpcServer) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    channel = insecure_channel(f"127.0.0.1:{server.port}", "test")
    yield ingest_pb2_grpc.IngestServiceStub(channel)
    await channel.close()


async def raw_items(redis: aioredis.Redis) -> list[news_pb2.NewsItem]:
    entries = await redis.xrange("news.raw")
    return [news_pb2.NewsItem.FromString(fields[b"data"]) for _, fields in entries]


async def test_publish_stores_normalised_item_once(ingest, redis) -> None:
    first = await ingest.Publish(ingest_pb2.PublishRequest(item=make_item("  SEC   approves spot ETH ETF ")))
    again = await ingest.Publish(ingest_pb2.PublishRequest(item=make_item("SEC approves spot ETH ETF")))
    assert not first.duplicate and first.stream_entry_id
    assert again.duplicate and again.item_id == first.item_id and again.stream_entry_id == ""
    stored = await raw_items(redis)
    assert len(stored) == 1
    assert stored[0].id == first.item_id
    assert stored[0].text == "SEC approves spot ETH ETF"
    assert stored[0].received_at.seconds > 0


BAD_ITEMS = {
    "empty text": (make_item("   \n "), "empty"),
    "text over 64 KiB": (make_item("x" * (64 * 1024 + 1)), "65,536-byte limit"),
    "future timestamp": (make_item(published_at=datetime.now(UTC) + timedelta(days=2)), "future"),
    "unknown platform": (make_item(platform=99), "platform"),
    "unspecified platform": (make_item(platform=0), "platform"),
}


@pytest.mark.parametrize("case", list(BAD_ITEMS))
async def test_bad_input_rejected_with_reason_and_not_stored(ingest, redis, case: str) -> None:
    item, words = BAD_ITEMS[case]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ingest.Publish(ingest_pb2.PublishRequest(item=item))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words.lower() in (err.value.details() or "").lower()
    assert await redis.xlen("news.raw") == 0


def invalid_utf8_request() -> bytes:
    """A PublishRequest whose NewsItem.text (field 9) holds bytes that are not UTF-8."""
    bad_item = make_item("PLACEHOLDER").SerializeToString().replace(b"PLACEHOLDER", b"BTC \xff\xfe up!")
    return bytes([0x0A]) + _varint(len(bad_item)) + bad_item


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


async def test_invalid_utf8_rejected(server, redis) -> None:
    raw = invalid_utf8_request()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        publish = ch.unary_unary(
            "/tapewatch.ingest.v1.IngestService/Publish",
            request_serializer=lambda b: b,
            response_deserializer=ingest_pb2.PublishResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await publish(raw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in (err.value.details() or "")
    assert await redis.xlen("news.raw") == 0


async def test_stream_keeps_valid_items_and_lists_rejections(ingest, redis) -> None:
    items = [
        make_item("Binance halts withdrawals after hack", 1),
        make_item("", 2),
        make_item("Tether mints 1B USDT", 3),
        make_item(platform=42, n=4),
        make_item("Binance halts withdrawals after hack", 1),  # repeat of the first
        make_item("Fed holds rates; BTC steady", 5),
    ]

    async def requests() -> AsyncIterator[ingest_pb2.PublishRequest]:
        for item in items:
            yield ingest_pb2.PublishRequest(item=item)

    summary = await ingest.PublishStream(requests())
    assert (summary.received, summary.accepted, summary.duplicates) == (6, 3, 1)
    assert [(r.index, r.code) for r in summary.rejected] == [(1, "INVALID_ARGUMENT"), (3, "INVALID_ARGUMENT")]
    assert "empty" in summary.rejected[0].reason and "platform" in summary.rejected[1].reason
    texts = [i.text for i in await raw_items(redis)]
    assert texts == [
        "Binance halts withdrawals after hack",
        "Tether mints 1B USDT",
        "Fed holds rates; BTC steady",
    ]


async def test_each_streamed_item_is_its_own_trace(ingest, redis, spans) -> None:
    async def requests() -> AsyncIterator[ingest_pb2.PublishRequest]:
        for n in range(3):
            yield ingest_pb2.PublishRequest(item=make_item(f"headline number {n}", n))

    await ingest.PublishStream(requests())
    entries = await redis.xrange("news.raw")
    trace_ids = {fields[b"traceparent"].split(b"-")[1] for _, fields in entries}
    assert len(entries) == 3 and len(trace_ids) == 3
    item_spans = [s for s in spans.get_finished_spans() if s.name == "ingest.item"]
    assert {format(s.context.trace_id, "032x").encode() for s in item_spans} == trace_ids


async def test_concurrent_publish_of_same_item_stores_once(ingest, redis) -> None:
    replies = await asyncio.gather(
        *(ingest.Publish(ingest_pb2.PublishRequest(item=make_item("Same story", 7))) for _ in range(20))
    )
    assert sum(not r.duplicate for r in replies) == 1
    assert await redis.xlen("news.raw") == 1
