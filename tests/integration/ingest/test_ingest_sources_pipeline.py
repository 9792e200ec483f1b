"""Source adapters into the real ingest service: the webhook answers 202 only once the item is stored."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from services.pipeline.supervisor import ServiceProcess
from services.runtime.redis_server import RedisStack, free_port
from tapewatch.news.v1 import news_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_webhook_source_publishes_through_ingest(
    redis: aioredis.Redis, redis_stack: RedisStack, tmp_path
) -> None:
    ingest_addr = f"127.0.0.1:{free_port()}"
    env = {"REDIS_URL": redis_stack.url, "TAPEWATCH_INGEST_ADDR": ingest_addr}
    ingest = ServiceProcess("ingest", ingest_addr, env, tmp_path).start()
    port = free_port()
    webhook = subprocess.Popen(  # noqa: ASYNC220 - the real command, as an operator runs it
        [sys.executable, "-m", "services.cli", "source", "webhook", f"port={port}"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await ingest.wait_serving()
        url = f"http://127.0.0.1:{port}/v1/news"
        post = {
            "text": "Coinbase lists $PEPE perpetuals",
            "source": "coinbase-status",
            "platform": "exchange",
            "published_at": "2024-05-01T12:00:00Z",
            "source_item_id": "cb-1",
        }
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.post(url, json=post) as reply:
                        assert reply.status == 202, await reply.text()
                        break
                except aiohttp.ClientConnectorError:
                    assert time.monotonic() < deadline, "webhook did not come up"
                    await asyncio.sleep(0.2)
            assert await redis.xlen("news.raw") == 1  # stored before the 202
            async with http.post(url, json={**post, "platform": "myspace"}) as reply:
                assert reply.status == 400
                assert "platform" in (await reply.json())["error"]
        [(_, fields)] = await redis.xrange("news.raw")
        item = news_pb2.NewsItem.FromString(fields[b"data"])
        assert (item.platform, item.text) == (news_pb2.PLATFORM_EXCHANGE, "Coinbase lists $PEPE perpetuals")
    finally:
        webhook.send_signal(signal.SIGTERM)
        webhook.communicate(timeout=10)
        ingest.stop()
