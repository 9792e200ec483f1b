"""`tapewatch analysis` as deployed: its own process, configured by TAPEWATCH_* variables, SERVING once
Redis answers, a story in -> a pending signal out, clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from analysis_harness import make_story

from services.pipeline.supervisor import ServiceProcess
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import publish
from tapewatch.approval.v1 import approval_pb2

pytestmark = pytest.mark.integration


async def test_the_service_process_turns_a_story_into_a_pending_signal(
    redis: aioredis.Redis, redis_stack: RedisStack, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {
        "REDIS_URL": redis_stack.url,
        "TAPEWATCH_ANALYSIS_ADDR": address,
        "TAPEWATCH_MODEL_SERVER_ADDR": f"127.0.0.1:{free_port()}",  # no model server: the rules judge
        "TAPEWATCH_MODEL_DEADLINE_S": "2",
        "TAPEWATCH_DATA_DIR": str(tmp_path),
        "TAPEWATCH_CONFIG": "",
    }
    service = ServiceProcess("analysis", address, env, tmp_path / "logs").start()
    try:
        await service.wait_serving(timeout_s=60)
        story = make_story(
            "Binance halts withdrawals after a hack; 7,000 BTC stolen", "st_proc", "binance", 30
        )
        await publish(redis, "news.unique", story.SerializeToString(), story.id)
        async with asyncio.timeout(60):
            while True:
                if await redis.xlen("signals.pending"):
                    break
                await asyncio.sleep(0.1)
        [(_, fields)] = await redis.xrange("signals.pending")
        signal = approval_pb2.Signal.FromString(fields[b"data"])
        assert signal.story_id == "st_proc" and signal.state == approval_pb2.SIGNAL_STATE_PENDING
        assert fields[b"key"].decode() == signal.id
    finally:
        proc = service.proc
        service.stop()
    assert proc is not None and proc.returncode == 0, (tmp_path / "logs" / "analysis.log").read_text()[-2000:]
    assert list((tmp_path / "analysis" / "archive").glob("*.jsonl"))
