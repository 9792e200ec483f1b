"""The live view of `tapewatch run`: counts and lag per stream, hop latencies, tokens/s, read from real
Redis Stack streams and the real model server."""

from __future__ import annotations

import io

import pytest
import redis.asyncio as aioredis
from rich.console import Console

from services.analysis.service import record_llm_usage
from services.model_server.process import ModelServerProcess
from services.pipeline.monitor import PipelineMonitor
from services.runtime.redis_server import free_port
from services.runtime.streams import publish
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2

pytestmark = pytest.mark.integration


def rendered(table: object) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


async def test_the_live_view_shows_stages_hops_and_tokens_per_second(
    redis: aioredis.Redis, model_server: ModelServerProcess
) -> None:
    item = news_pb2.NewsItem(id="nw_1", text="Binance halts withdrawals")
    await publish(redis, "news.raw", item.SerializeToString(), item.id)
    story = news_pb2.Story(id="st_1", first_item=item)
    await publish(redis, "news.unique", story.SerializeToString(), story.id)
    signal = approval_pb2.Signal(id="sg_1", story_id=story.id)
    await publish(redis, "signals.pending", signal.SerializeToString(), signal.id)
    await record_llm_usage(redis, tokens=60, seconds=2.0)
    await record_llm_usage(redis, tokens=40, seconds=2.0)

    monitor = PipelineMonitor(redis, f"127.0.0.1:{free_port()}", model_server.grpc_url)
    try:
        text = rendered(await monitor.table())
    finally:
        await monitor.close()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert {"news.raw", "news.unique", "signals.pending", "signals.approved"} <= set(rows)
    caption = " ".join(text.split())  # the caption wraps
    assert "ingest->story p50" in caption and "story->signal p50" in caption  # keys matched across hops
    assert "llm 25.0 tok/s, requests" in caption  # 100 tokens over 4 s of model calls
    assert "LLM calls saved -" in caption  # dedup is not running: the view says so instead of failing
