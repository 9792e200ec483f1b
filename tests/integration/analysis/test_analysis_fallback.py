"""When the model server is stopped (frozen) or gone, the rules judge, marked as such, and stories flow on."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from analysis_harness import analysis_settings, make_story, start_harness

from services.model_client import ModelClient
from services.runtime.redis_server import free_port
from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2

pytestmark = pytest.mark.integration

HACK = "Binance halts withdrawals after a hot wallet hack; 7,000 BTC stolen"


async def test_a_stopped_model_server_falls_back_to_rules_within_the_deadline(
    redis: aioredis.Redis, model_server, tmp_path: Path
) -> None:
    settings = analysis_settings(tmp_path, model_server.grpc_url, model_deadline_s=3.0)
    async with ModelClient(model_server.grpc_url, deadline_s=3.0, retries=1) as model:
        async for harness in start_harness(redis, settings, model):
            with model_server.paused():
                await publish(
                    redis,
                    "news.unique",
                    make_story(HACK, "st_frozen", "binance", 30).SerializeToString(),
                    "st_frozen",
                )
                record = await harness.wait_done("st_frozen", timeout_s=30)
            [signal] = await harness.signals()
    assert record["judged_by"] == "rules"
    assert "deadline" in record["fallback_reason"] or "DEADLINE" in record["fallback_reason"]
    assert signal.impact.judged_by == analysis_pb2.JUDGED_BY_RULES_FALLBACK
    assert signal.impact.model.startswith("rules (") and signal.impact.rationale.startswith("rules: ")
    assert signal.state == approval_pb2.SIGNAL_STATE_PENDING
    assert record["timings_ms"]["model_ms"] < 3000 + 1000


async def test_a_model_server_that_is_gone_falls_back_to_rules(redis: aioredis.Redis, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = analysis_settings(tmp_path, address, model_deadline_s=5.0)
    async with ModelClient(address, deadline_s=5.0, retries=1) as model:
        async for harness in start_harness(redis, settings, model):
            reply = await harness.stub.Analyze(
                analysis_pb2.AnalyzeRequest(
                    item=make_story(HACK, "st_gone", "binance").first_item, echo_count=30
                )
            )
            await publish(
                redis,
                "news.unique",
                make_story("Doge to the moon", "st_gone2").SerializeToString(),
                "st_gone2",
            )
            record = await harness.wait_done("st_gone2", timeout_s=30)
    impact = reply.impact
    assert impact.judged_by == analysis_pb2.JUDGED_BY_RULES_FALLBACK
    assert "unavailable" in impact.model.lower() and impact.raw_judgement == ""
    assert impact.materiality == analysis_pb2.MATERIALITY_HIGH
    assert impact.event_type == analysis_pb2.EVENT_TYPE_HACK_OR_EXPLOIT
    assert {a.asset for a in impact.assets} == {"BTC"}
    assert all(a.direction == analysis_pb2.DIRECTION_BEARISH for a in impact.assets)
    assert record["judged_by"] == "rules" and "unavailable" in record["fallback_reason"]
