"""One news item is one trace from ingest to the quote change: ingest, dedup, analysis, approval and the
quoting adapter run as real processes exporting OTLP to a receiver in this test, with the real model server.

Materiality is forced the service's own way: analysis gets a model deadline no reply can meet
(TAPEWATCH_MODEL_DEADLINE_S for that process only), so its rules fallback judges, and the rules mark a post
by a watched author naming a coin notable; the small CPU model would mostly say routine, and a routine
story makes no signal to approve.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from services.bench.e2e import pipeline_processes
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack
from services.runtime.traces import TraceCollector, start_collector, summarise
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2, approval_pb2_grpc
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tapewatch.news.v1 import news_pb2
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EDGES = [
    ("e2e -> Publish", "ingest.Publish"),
    ("ingest.Publish", "dedup consume news.raw"),
    ("dedup consume news.raw", "analysis consume news.unique"),
    ("analysis consume news.unique", "publish signals.pending"),
    ("publish signals.pending", "approval consume signals.pending"),
    ("publish signals.pending", "approval.decide"),
    ("approval.decide", "quoting consume signals.approved"),
    ("quoting consume signals.approved", "quoting.apply_signal"),
]


def post(text: str) -> news_pb2.NewsItem:
    item = news_pb2.NewsItem(
        source="x",
        source_item_id=os.urandom(6).hex(),
        platform=news_pb2.PLATFORM_X,
        author="elonmusk",
        text=text,
    )
    item.published_at.FromDatetime(datetime.now(UTC))
    return item


def applied_in(c: TraceCollector, trace_id: str) -> bool:
    return any(s.name == "quoting.apply_signal" for s in c.spans[trace_id])


def applied(c: TraceCollector) -> bool:
    return any(applied_in(c, t) for t in c.spans)


async def test_one_trace_spans_ingest_dedup_analysis_approval_and_quoting(
    redis: aioredis.Redis, redis_stack: RedisStack, model_server, spans, tmp_path: Path
) -> None:
    server, collector, otlp_port = await start_collector()
    endpoint = f"http://127.0.0.1:{otlp_port}"
    rules_judge = {"analysis": {"TAPEWATCH_MODEL_DEADLINE_S": "0.01"}}
    try:
        async with pipeline_processes(
            tmp_path, redis_stack.url, model_server.grpc_url, endpoint, rules_judge
        ) as pipeline:
            channel = insecure_channel(pipeline.address("ingest"), "e2e")
            reply = await ingest_pb2_grpc.IngestServiceStub(channel).Publish(
                ingest_pb2.PublishRequest(item=post("Excuse me, I only sell Doge!")), timeout=30
            )
            await channel.close()

            approval = insecure_channel(pipeline.address("approval"), "e2e")
            desk = approval_pb2_grpc.ApprovalServiceStub(approval)
            watch = desk.WatchPending(approval_pb2.WatchPendingRequest(), metadata=pipeline.trader)
            async for event in watch:  # the scripted trader: approve the first signal that shows up
                signal = event.signal
                break
            watch.cancel()
            assert signal.story.first_item.id == reply.item_id
            assert signal.impact.materiality == analysis_pb2.MATERIALITY_NOTABLE
            await desk.Decide(
                approval_pb2.DecideRequest(signal_id=signal.id, action=approval_pb2.ACTION_APPROVE),
                metadata=pipeline.trader,
                timeout=10,
            )
            await approval.close()

            await collector.wait_for(applied, timeout_s=60)
            quoting = insecure_channel(pipeline.address("quoting"), "e2e")
            params = await quoting_pb2_grpc.QuotingServiceStub(quoting).GetQuoteParams(
                quoting_pb2.GetQuoteParamsRequest(asset="DOGE"), timeout=10
            )
            await quoting.close()
            assert signal.id in params.signal_ids and params.bid_widening_bps > 0  # the quote changed

            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)  # this test's own client spans
            await asyncio.to_thread(exporter.export, list(spans.get_finished_spans()))
            exporter.shutdown()

            def whole(c: TraceCollector) -> bool:
                return all(e in c.edges(signal.trace_id) for e in EDGES)

            # the services export in batches: wait while they still run (a stopped one may drop its last)
            with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
                await collector.wait_for(whole, timeout_s=30)

        [trace_id] = [t for t in collector.spans if applied_in(collector, t)]
        assert trace_id == signal.trace_id
        edges = collector.edges(trace_id)
        assert [e for e in EDGES if e not in edges] == [], sorted(edges)
        stages = summarise(collector.spans[trace_id])["stages"]
        assert {s["service"] for s in stages} >= {"ingest", "dedup", "analysis", "approval", "quoting"}
        order = [s["name"] for s in stages]
        firsts = [order.index(name) for _, name in EDGES]
        assert firsts == sorted(firsts)  # in that order in time
    finally:
        await server.stop(0)
