"""Issue 4's acceptance on real components: Redis Stack, the CPU model server (Triton), gRPC on loopback,
the dedup service consuming `news.raw`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from dedup_support import RunningDedup, make_item, put_raw, wait_handled, wait_until

from services.model_server.process import ModelServerProcess
from services.pipeline.supervisor import ServiceProcess
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import dead_letters, publish
from tapewatch.dedup.v1 import dedup_pb2, dedup_pb2_grpc
from tapewatch.news.v1 import news_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORIGINAL = "SEC approves spot ETH ETF"
REPOST = "🚨🚨 BREAKING: SEC APPROVES SPOT $ETH ETF!!! 🚀🚀🚀 #Ethereum https://t.co/aB3dE"


async def stories(redis: aioredis.Redis) -> list[news_pb2.Story]:
    return [news_pb2.Story.FromString(fields[b"data"]) for _, fields in await redis.xrange("news.unique")]


async def test_repost_with_emoji_cashtags_and_breaking_is_a_duplicate(dedup_service: RunningDedup) -> None:
    first = make_item(ORIGINAL, 1, source="reuters")
    copy = make_item(REPOST, 2, source="x", platform=news_pb2.PLATFORM_X, author="whale_alert",
                     published=datetime.now(UTC) + timedelta(seconds=40))  # fmt: skip
    await put_raw(dedup_service.redis, first)
    await dedup_service.handled()
    await put_raw(dedup_service.redis, copy)
    await dedup_service.handled()

    unique = await stories(dedup_service.redis)
    assert len(unique) == 1 and unique[0].first_item.id == first.id
    story = await dedup_service.stub.GetStory(dedup_pb2.GetStoryRequest(story_id=unique[0].id))
    assert story.echo_count == 1
    assert list(story.sources) == ["reuters", "x"]
    assert set(story.platforms) == {news_pb2.PLATFORM_NEWSWIRE, news_pb2.PLATFORM_X}
    assert [e.item_id for e in story.echoes] == [copy.id]
    assert story.echoes[0].author == "whale_alert" and story.echoes[0].similarity >= 0.75
    assert 39_000 <= story.echoes[0].delay_ms <= 41_000
    assert story.echo_rate_per_min == pytest.approx(1.0)  # one copy within the first minute

    check = await dedup_service.stub.Check(
        dedup_pb2.CheckRequest(text="JUST IN: $ETH spot ETF approved by the SEC 🔥")
    )
    assert check.verdict == dedup_pb2.VERDICT_DUPLICATE and check.neighbour_story_id == story.id
    assert check.rule in (dedup_pb2.RULE_ABOVE_DUPLICATE_THRESHOLD, dedup_pb2.RULE_SECOND_LOOK_AGREES)

    stats = await dedup_service.stub.Stats(dedup_pb2.StatsRequest())
    assert (stats.items_in, stats.stories, stats.duplicates, stats.llm_calls_saved) == (2, 1, 1, 1)
    assert stats.stories_in_window == 1 and stats.window_seconds == 24 * 3600


@pytest.mark.parametrize(
    ("story_text", "item_text", "contradiction"),
    [
        (ORIGINAL, "SEC delays spot ETH ETF decision", "approval: delay vs approve"),
        ("Bitcoin ETFs see $500M inflows", "Bitcoin ETFs see $300M outflows", "flows: out vs in"),
    ],
    ids=["approves-vs-delays", "inflows-vs-outflows"],
)
async def test_opposite_news_is_not_a_duplicate(
    dedup_service: RunningDedup, story_text: str, item_text: str, contradiction: str
) -> None:
    await put_raw(dedup_service.redis, make_item(story_text, 1))
    await dedup_service.handled()
    check = await dedup_service.stub.Check(dedup_pb2.CheckRequest(text=item_text))
    assert check.verdict == dedup_pb2.VERDICT_NEW and check.neighbour_text == story_text
    if check.similarity > dedup_service.settings.new_threshold:
        # The base embedder puts the two close: the second look finds the contradiction.
        assert check.rule in (dedup_pb2.RULE_CONTRADICTED_ABOVE_THRESHOLD, dedup_pb2.RULE_SECOND_LOOK_DIFFERS)
        assert contradiction in check.explanation
    else:  # the crypto fine-tune already keeps them apart
        assert check.rule == dedup_pb2.RULE_BELOW_NEW_THRESHOLD

    await put_raw(dedup_service.redis, make_item(item_text, 2))
    await dedup_service.handled()
    assert len(await stories(dedup_service.redis)) == 2
    stats = await dedup_service.stub.Stats(dedup_pb2.StatsRequest())
    assert (stats.stories, stats.duplicates) == (2, 0)


async def test_story_older_than_the_window_is_not_matched(dedup_service: RunningDedup) -> None:
    now = datetime.now(UTC)
    old = make_item(ORIGINAL, 1, published=now - timedelta(hours=25))
    await put_raw(dedup_service.redis, old)
    await dedup_service.handled()
    old_story = (await stories(dedup_service.redis))[0]
    check = await dedup_service.stub.Check(dedup_pb2.CheckRequest(text=ORIGINAL))  # published now
    assert check.rule == dedup_pb2.RULE_EMPTY_WINDOW and check.verdict == dedup_pb2.VERDICT_NEW

    await put_raw(dedup_service.redis, make_item(ORIGINAL, 2, published=now))
    await dedup_service.handled()
    assert len(await stories(dedup_service.redis)) == 2

    # The sweep (every 0.2 s here) takes the old story out of the index; its record stays, with a TTL.
    key = f"tw:dedup:story:{old_story.id}"

    async def swept() -> bool:
        return not await dedup_service.redis.hexists(key, "vec")

    await wait_until(swept, 10, "the sweep")
    assert 0 < await dedup_service.redis.ttl(key) <= 7 * 86400
    story = await dedup_service.stub.GetStory(dedup_pb2.GetStoryRequest(story_id=old_story.id))
    assert story.first_item.id == old.id
    stats = await dedup_service.stub.Stats(dedup_pb2.StatsRequest())
    assert stats.stories == 2 and stats.stories_in_window == 1


async def test_bad_input_is_dead_lettered_with_its_reason_not_retried(dedup_service: RunningDedup) -> None:
    redis = dedup_service.redis
    await put_raw(redis, make_item("🚀🚀🚀 https://t.co/xyz 🔥", 1))
    await publish(redis, "news.raw", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xff", "image-1")
    await dedup_service.handled()
    dead = await dead_letters(redis, "news.raw")
    reasons = {d["key"]: d["dead.reason"] for d in dead}
    assert "empty after normalisation" in reasons["nw_test_1"]
    assert "not a NewsItem" in reasons["image-1"]
    assert all(d["dead.deliveries"] == "1" for d in dead)  # rejected at once, not retried
    stats = await dedup_service.stub.Stats(dedup_pb2.StatsRequest())
    assert (stats.rejected, stats.items_in, stats.stories) == (2, 0, 0)
    assert await redis.xlen("news.unique") == 0 if await redis.exists("news.unique") else True

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dedup_service.stub.Check(dedup_pb2.CheckRequest(text="🔥🔥 https://x.com/a"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dedup_service.stub.GetStory(dedup_pb2.GetStoryRequest(story_id="st_missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_redelivered_item_counts_once(dedup_service: RunningDedup) -> None:
    item = make_item(ORIGINAL, 1)
    copy = make_item(REPOST, 2, source="x")
    for message in (item, copy, copy, item):  # the tape may deliver an item again (at-least-once)
        await put_raw(dedup_service.redis, message)
    await dedup_service.handled()
    stats = await dedup_service.stub.Stats(dedup_pb2.StatsRequest())
    assert (stats.items_in, stats.stories, stats.duplicates) == (2, 1, 1)
    story = (await stories(dedup_service.redis))[0]
    assert (await dedup_service.stub.GetStory(dedup_pb2.GetStoryRequest(story_id=story.id))).echo_count == 1


async def test_a_restart_keeps_window_index_and_stories(
    tmp_path: Path, redis_stack: RedisStack, redis: aioredis.Redis, model_server: ModelServerProcess
) -> None:
    """Two service processes one after the other on the same Redis: the second finds everything."""
    address = f"127.0.0.1:{free_port()}"
    env = {
        "REDIS_URL": redis_stack.url,
        "TAPEWATCH_DEDUP_ADDR": address,
        "TAPEWATCH_MODEL_SERVER_ADDR": model_server.grpc_url,
        "TAPEWATCH_LOG_FORMAT": "text",
        "TAPEWATCH_CONFIG": "",
    }
    first = make_item(ORIGINAL, 1)
    service = ServiceProcess("dedup", address, env, tmp_path / "logs").start()
    try:
        await service.wait_serving(120)
        await put_raw(redis, first)
        await wait_handled(redis, "news.raw", "dedup")
    finally:
        service.stop()
    story_id = (await stories(redis))[0].id

    service = ServiceProcess("dedup", address, env, tmp_path / "logs").start()
    try:
        await service.wait_serving(120)
        channel = insecure_channel(address, "test")
        stub = dedup_pb2_grpc.DedupServiceStub(channel)
        stats = await stub.Stats(dedup_pb2.StatsRequest())
        assert (stats.items_in, stats.stories, stats.stories_in_window) == (1, 1, 1)
        story = await stub.GetStory(dedup_pb2.GetStoryRequest(story_id=story_id))
        assert story.first_item.id == first.id
        await put_raw(redis, make_item(REPOST, 2, source="x"))  # the index still finds the story
        await wait_handled(redis, "news.raw", "dedup")
        story = await stub.GetStory(dedup_pb2.GetStoryRequest(story_id=story_id))
        assert story.echo_count == 1 and len(await stories(redis)) == 1
        await channel.close()
    finally:
        service.stop()
