"""The analysis stage of the pipeline: news.unique -> judgement -> archive -> signals.pending, one trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from analysis_harness import Harness, analysis_settings, make_story, start_harness
from opentelemetry import trace

from services.analysis.service import LLM_USAGE_KEY, signal_id_for
from services.runtime.redis_server import free_port
from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2

pytestmark = pytest.mark.integration
tracer = trace.get_tracer("test")


async def test_llm_judged_stories_are_archived_and_material_ones_become_pending_signals(
    analysis: Harness, redis: aioredis.Redis, tmp_path: Path
) -> None:
    hack = "Binance halts all withdrawals after a hot wallet hack; 7,000 BTC stolen"
    stories = [
        make_story(hack, "st_hack", "binance", echo_count=40),
        make_story("Happy Thanksgiving to all!", "st_greeting", "realDonaldTrump"),
        make_story("Dogecoin is the people's crypto", "st_doge", "elonmusk", echo_count=12),
    ]  # fmt: skip
    for story in stories:
        await publish(redis, "news.unique", story.SerializeToString(), story.id)
    records = {s.id: await analysis.wait_done(s.id) for s in stories}
    signals = {s.story_id: s for s in await analysis.signals()}
    for story in stories:
        record = records[story.id]
        assert record["judged_by"] == "llm" and record["prompt_version"].startswith("impact-v1+")
        assert record["timings_ms"]["model_ms"] > 0 and len(record["trace_id"]) == 32
        material = record["materiality"] != "routine"
        assert (story.id in signals) == material  # routine stories are archived only
        if material:
            signal = signals[story.id]
            assert signal.id == record["signal_id"] == signal_id_for(story.id)
            assert signal.state == approval_pb2.SIGNAL_STATE_PENDING
            assert (
                signal.expires_at.ToSeconds() - signal.created_at.ToSeconds()
                == analysis.settings.signal_expiry_s
            )
            assert signal.story.first_item.text == story.first_item.text
            assert {a.asset for a in signal.adjustments} == set(record["assets"])
    pending = await redis.xpending("news.unique", "analysis")
    assert pending["pending"] == 0  # every story acknowledged
    usage = await redis.hgetall(LLM_USAGE_KEY)  # what the live view's tokens/s is made of
    assert int(usage[b"calls"]) == len(stories) and int(usage[b"tokens"]) >= 10 * len(stories)
    assert 0 < float(usage[b"seconds"]) < sum(r["timings_ms"]["model_ms"] for r in records.values()) / 1000
    lines = [
        json.loads(line)
        for f in (tmp_path / "analysis" / "archive").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(r["story_id"] for r in lines) == sorted(s.id for s in stories)


async def test_a_signal_continues_the_story_trace_and_a_redelivery_is_not_signalled_twice(
    redis: aioredis.Redis, tmp_path: Path, spans
) -> None:
    """Without a model the rules judge, and they make this story material for sure."""
    settings = analysis_settings(tmp_path, f"127.0.0.1:{free_port()}")
    story = make_story(
        "Binance halts withdrawals after a hack; 7,000 BTC stolen", "st_trace", "binance", echo_count=30
    )
    async for harness in start_harness(redis, settings, None):
        with tracer.start_as_current_span("dedup publish") as parent:
            await publish(redis, "news.unique", story.SerializeToString(), story.id)
        record = await harness.wait_done(story.id)
        again = await publish(redis, "news.unique", story.SerializeToString(), story.id)  # at-least-once
        await harness.wait_acked(again)
        [signal] = await harness.signals()
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert signal.trace_id == trace_id == record["trace_id"]
    assert signal.impact.judged_by == analysis_pb2.JUDGED_BY_RULES_FALLBACK
    finished = {
        s.name: s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id
    }
    consume, produce = finished["analysis consume news.unique"], finished["publish signals.pending"]
    assert produce.parent is not None and produce.parent.span_id == consume.context.span_id
