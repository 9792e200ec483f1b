"""Helpers of the dedup tests: items, the raw stream, waiting for the consumers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from services.dedup.settings import DedupSettings
from services.runtime.streams import publish
from tapewatch.dedup.v1 import dedup_pb2_grpc
from tapewatch.news.v1 import news_pb2


def make_item(
    text: str,
    n: int,
    source: str = "cointelegraph",
    platform: int = news_pb2.PLATFORM_NEWSWIRE,
    published: datetime | None = None,
    author: str = "reporter",
) -> news_pb2.NewsItem:
    item = news_pb2.NewsItem(
        id=f"nw_test_{n}",
        source=source,
        source_item_id=str(n),
        platform=platform,  # type: ignore[arg-type]
        author=author,
        text=text,
    )
    item.published_at.FromDatetime(published or datetime.now(UTC))
    item.received_at.FromDatetime(datetime.now(UTC))
    return item


async def put_raw(redis: aioredis.Redis, item: news_pb2.NewsItem, stream: str = "news.raw") -> None:
    await publish(redis, stream, item.SerializeToString(), item.id)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class RunningDedup:
    settings: DedupSettings
    stub: dedup_pb2_grpc.DedupServiceStub
    redis: aioredis.Redis

    async def handled(self, timeout_s: float = 60.0) -> None:
        """Wait until every message on news.raw is acknowledged or dead-lettered by the dedup group."""
        await wait_handled(self.redis, self.settings.raw_stream, self.settings.group, timeout_s)


async def wait_handled(redis: aioredis.Redis, stream: str, group: str, timeout_s: float = 60.0) -> None:
    async def done() -> bool:
        groups = await redis.xinfo_groups(stream)
        info = next((g for g in groups if g["name"] in (group.encode(), group)), None)
        return info is not None and int(info["pending"]) == 0 and int(info.get("lag") or 0) == 0

    await wait_until(done, timeout_s, f"every message on {stream} handled by {group}")
