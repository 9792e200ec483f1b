"""Race safety: copies of one story arriving at the same instant on two dedup consumers make one story.

Two real StreamConsumer instances of one consumer group, each with its own Redis connection, embedder
client and Deduplicator, as two dedup processes would have."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
import redis.asyncio as aioredis
from dedup_support import make_item, put_raw

from services.dedup.embedding import EmbedBatcher
from services.dedup.rule import Thresholds
from services.dedup.service import Deduplicator
from services.dedup.store import Claim, StoryStore
from services.model_client import ModelClient
from services.model_server.process import ModelServerProcess
from services.runtime.redis_server import RedisStack
from services.runtime.streams import StreamConsumer
from tapewatch.news.v1 import news_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Consumer:
    redis: aioredis.Redis
    client: ModelClient
    store: StoryStore
    dedup: Deduplicator
    stream: StreamConsumer


@pytest.fixture
async def consumers(
    redis_stack: RedisStack, redis: aioredis.Redis, model_server: ModelServerProcess
) -> AsyncIterator[list[Consumer]]:
    made = []
    for name in ("dedup-a", "dedup-b"):
        conn = aioredis.Redis.from_url(redis_stack.url)
        client = ModelClient(model_server.grpc_url, deadline_s=60)
        batcher = EmbedBatcher(client.embed)
        store = StoryStore(conn)
        await store.ensure_index(int((await client.embed(["dimension"])).shape[1]))
        dedup = Deduplicator(store, batcher.embed, Thresholds())
        stream = StreamConsumer(
            conn, "news.raw", "dedup", name, dedup.handle, label=name, batch=1, block_ms=20, concurrency=8
        )
        await stream.ensure_group()
        made.append(Consumer(conn, client, store, dedup, stream))
    yield made
    for c in made:
        await c.client.close()
        await c.redis.aclose()


def claims_of(consumer: Consumer, barrier: asyncio.Barrier | None = None) -> list[str]:
    """Record every claim's outcome; with a barrier, the first claims wait until both consumers searched."""
    seen: list[str] = []
    create = consumer.store.create

    async def recording_create(
        item: news_pb2.NewsItem, vec: npt.NDArray[np.float32], seen_ms: int, expected_seq: str, stat: str = ""
    ) -> Claim:
        if barrier is not None and not seen:
            async with asyncio.timeout(30):
                await barrier.wait()
        claim = await create(item, vec, seen_ms, expected_seq, stat)
        seen.append(claim.status)
        return claim

    consumer.store.create = recording_create  # type: ignore[method-assign]
    return seen


async def unique_stories(redis: aioredis.Redis) -> list[news_pb2.Story]:
    return [news_pb2.Story.FromString(f[b"data"]) for _, f in await redis.xrange("news.unique")]


async def test_two_copies_at_the_same_instant_on_two_consumers_make_one_story(
    consumers: list[Consumer], redis: aioredis.Redis
) -> None:
    a, b = consumers
    barrier = asyncio.Barrier(2)
    claims_a, claims_b = claims_of(a, barrier), claims_of(b, barrier)
    await put_raw(redis, make_item("SEC approves spot ETH ETF", 1, source="reuters"))
    await put_raw(redis, make_item("BREAKING: SEC approves spot $ETH ETF 🚀", 2, source="x"))

    # Each consumer reads one copy; both search an empty window before either claims a new story.
    read = await asyncio.gather(a.stream.read_new(), b.stream.read_new())
    assert read == [1, 1]

    assert sorted(claims_a + claims_b) == ["created", "stale"]  # one claim lost the race ...
    unique = await unique_stories(redis)
    assert len(unique) == 1  # ... searched again, found the winner's story and became its echo
    story = await a.store.get_story(unique[0].id)
    assert story is not None and story.echo_count == 1
    assert sorted([story.first_item.source, story.echoes[0].source]) == ["reuters", "x"]
    assert (await redis.xpending("news.raw", "dedup"))["pending"] == 0
    stats = await a.store.stats()
    assert (stats["items_in"], stats["stories"], stats["duplicates"]) == (2, 1, 1)


async def test_a_flood_of_copies_over_two_consumers_makes_one_story_per_event(
    consumers: list[Consumer], redis: aioredis.Redis
) -> None:
    events = [
        (
            "SEC approves spot ETH ETF",
            "BREAKING: SEC approves spot $ETH ETF 🚀",
            "JUST IN: SEC APPROVES SPOT ETH ETF",
        ),
        (
            "Binance halts withdrawals after hack",
            "🚨 Binance halts withdrawals after hack",
            "BREAKING: #Binance halts withdrawals after hack",
        ),
        (
            "Tesla buys $1.5B of Bitcoin",
            "JUST IN: Tesla buys $1.5B of $BTC 🚀",
            "Tesla buys $1.5B of Bitcoin!!!",
        ),
        (
            "Fed raises interest rates by 75 basis points",
            "BREAKING: Fed raises interest rates by 75 basis points",
            "🚨 FED RAISES INTEREST RATES BY 75 BASIS POINTS",
        ),
    ]
    n = 0
    for round_ in range(3):  # copies interleaved: every event arrives on both consumers at once
        for event in events:
            for text in event:
                n += 1
                await put_raw(redis, make_item(text, n, source=f"src{round_}"))
    for c in consumers:
        c.stream.batch = 8
    stop = asyncio.Event()
    runs = [asyncio.create_task(c.stream.run(stop)) for c in consumers]

    async def drained() -> None:
        while True:
            groups = await redis.xinfo_groups("news.raw")
            if groups[0]["pending"] == 0 and groups[0]["lag"] == 0:
                return
            await asyncio.sleep(0.05)

    async with asyncio.timeout(120):
        await drained()
    stop.set()
    await asyncio.gather(*runs)

    assert all(c.stream.stats["acked"] > 0 for c in consumers)  # both consumers took part
    unique = await unique_stories(redis)
    assert len(unique) == len(events)
    echoes = [(await consumers[0].store.get_story(s.id)).echo_count for s in unique]  # type: ignore[union-attr]
    assert sorted(echoes) == [3 * 3 - 1] * len(events)
    stats = await consumers[0].store.stats()
    assert (stats["items_in"], stats["stories"], stats["duplicates"]) == (n, len(events), n - len(events))
