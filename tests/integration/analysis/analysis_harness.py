"""Helpers for the analysis integration tests (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from services.analysis.service import RunningAnalysis, running
from services.analysis.settings import AnalysisSettings
from services.model_client import ModelClient
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import free_port
from tapewatch.analysis.v1 import analysis_pb2_grpc
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2


def make_story(
    text: str,
    story_id: str = "st_test1",
    author: str = "elonmusk",
    platform: int = news_pb2.PLATFORM_X,
    echo_count: int = 0,
    published_at: datetime | None = None,
) -> news_pb2.Story:
    item = news_pb2.NewsItem(
        id=f"nw_{story_id}",
        source="x",
        source_item_id=story_id,
        platform=platform,
        author=author,
        text=text,  # type: ignore[arg-type]
    )
    item.published_at.FromDatetime(published_at or datetime.now(UTC) - timedelta(seconds=5))
    story = news_pb2.Story(id=story_id, first_item=item, echo_count=echo_count, sources=["x"])
    story.first_seen.CopyFrom(item.published_at)
    return story


def analysis_settings(tmp_path: Path, model_server_addr: str, **overrides: Any) -> AnalysisSettings:
    values: dict[str, Any] = {
        "model_server_addr": model_server_addr,
        "analysis_addr": f"127.0.0.1:{free_port()}",
        "data_dir": tmp_path,
        "consumer_name": "analysis-test",
        "model_deadline_s": 60.0,
        "shutdown_grace_s": 0.5,
    }
    values.update(overrides)
    return AnalysisSettings.load(**values)


@dataclass
class Harness:
    app: RunningAnalysis
    redis: aioredis.Redis
    settings: AnalysisSettings
    stub: analysis_pb2_grpc.AnalysisServiceStub

    async def signals(self) -> list[approval_pb2.Signal]:
        entries = await self.redis.xrange(self.settings.signals_stream)
        return [approval_pb2.Signal.FromString(fields[b"data"]) for _, fields in entries]

    async def wait_done(self, story_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """The archived record once the story is fully handled (signal and alerts sent)."""
        async with asyncio.timeout(timeout_s):
            while True:
                if await self.app.archive.done(story_id):
                    break
                await asyncio.sleep(0.05)
        record = await self.app.archive.record(story_id)
        assert record is not None
        return record

    async def wait_acked(self, entry_id: str, timeout_s: float = 60.0) -> None:
        """Until the group has delivered `entry_id` of news.unique and nothing is pending."""
        async with asyncio.timeout(timeout_s):
            while True:
                [group] = await self.redis.xinfo_groups(self.settings.news_stream)
                last = group["last-delivered-id"]
                if (last.decode() if isinstance(last, bytes) else last) >= entry_id and not group["pending"]:
                    break
                await asyncio.sleep(0.05)


async def start_harness(
    redis: aioredis.Redis, settings: AnalysisSettings, model: ModelClient | None
) -> AsyncIterator[Harness]:
    async with aiohttp.ClientSession() as session, running(settings, redis, model, session) as app:
        channel = insecure_channel(f"127.0.0.1:{app.port}", "test")
        try:
            yield Harness(app, redis, settings, analysis_pb2_grpc.AnalysisServiceStub(channel))
        finally:
            await channel.close()


@dataclass
class Recorder:
    """A local HTTP server standing in for Slack and Telegram; it records every request."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path, "json": await request.json()})
        if self.status != 200:
            return web.Response(status=self.status, text="boom")
        if request.path.endswith("/sendMessage"):
            return web.json_response({"ok": True, "result": {"message_id": len(self.requests)}})
        return web.Response(text="ok")
