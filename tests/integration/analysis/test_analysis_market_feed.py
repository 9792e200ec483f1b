"""Market state from the quoting adapter's stream `tw:market:<ASSET>` (fields mid, time_ms) in Redis Stack,
and its effect on the quoting probability of a story."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from analysis_harness import analysis_settings, make_story, start_harness

from services.analysis.market import MarketWindow, RedisMarketFeed
from services.runtime.streams import publish

pytestmark = pytest.mark.integration
MIN = 60_000


async def push_mids(redis: aioredis.Redis, asset: str, now_ms: int, burst: bool) -> None:
    """Three hours of mids every 20 s, a calm zigzag of 2 bps; with `burst`, 60 bps swings for 20 min."""
    async with redis.pipeline(transaction=False) as pipe:
        for k in range(3 * 180, -1, -1):
            t = now_ms - k * 20_000
            swing = 0.006 if burst and k < 60 else 0.0002
            mid = 100.0 * math.exp(swing * (1 if k % 2 else -1))
            pipe.xadd(f"tw:market:{asset}", {"mid": repr(mid), "time_ms": t}, id=f"{t}-0")
        await pipe.execute()


async def test_feed_reads_the_adapter_stream_incrementally(redis: aioredis.Redis) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await push_mids(redis, "DOGE", now_ms - 10 * MIN, burst=False)
    feed = RedisMarketFeed(redis, "tw:market:", MarketWindow(30, 24, 120), page=100)
    calm = await feed.state("DOGE", now_ms - 10 * MIN)
    assert calm.enough_history and 0.5 < calm.vol_ratio < 2 and calm.mid is not None
    for k in range(1, 31):  # ten more minutes, wild: read on top of what the feed already holds
        t = now_ms - 10 * MIN + k * 20_000
        await redis.xadd(
            "tw:market:DOGE", {"mid": repr(100.0 * math.exp(0.01 * (-1) ** k)), "time_ms": t}, id=f"{t}-0"
        )
    wild = await feed.state("DOGE", now_ms)
    assert wild.vol_ratio > 3 * calm.vol_ratio and wild.history_minutes > calm.history_minutes
    unknown = await feed.state("PEPE", now_ms)
    assert not unknown.enough_history and unknown.vol_ratio == 1.0


async def test_a_volatile_asset_gets_a_higher_quoting_probability(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await push_mids(redis, "BTC", now_ms, burst=False)
    await push_mids(redis, "ETH", now_ms, burst=True)
    text = "SEC sues a major exchange over BTC and ETH products"
    async for harness in start_harness(redis, analysis_settings(tmp_path, "127.0.0.1:1"), None):
        await publish(
            redis, "news.unique", make_story(text, "st_mkt", "reuters").SerializeToString(), "st_mkt"
        )
        record = await harness.wait_done("st_mkt")
    market = record["market"]
    assert market["ETH"]["vol_ratio"] > 2 > market["BTC"]["vol_ratio"]
    assert record["p_market"]["ETH"] > record["p_market"]["BTC"]
    assert record["p_quoting"]["ETH"] > record["p_quoting"]["BTC"]
    widen = {a["asset"]: a.get("widening_bps", 0.0) for a in record["adjustments"]}
    assert widen["ETH"] > widen["BTC"]
