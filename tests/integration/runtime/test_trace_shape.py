"""One news item is one trace: the caller, the ingest service (a real process exporting OTLP) and the next
stage's consumer, collected by the same receiver `tapewatch traces` runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from services.pipeline.supervisor import ServiceProcess
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import Message, StreamConsumer
from services.runtime.traces import start_collector, summarise
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tapewatch.news.v1 import news_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_item_trace_spans_caller_ingest_and_consumer(
    redis: aioredis.Redis, redis_stack: RedisStack, spans, tmp_path: Path
) -> None:
    server, collector, otlp_port = await start_collector()
    address = f"127.0.0.1:{free_port()}"
    ingest = ServiceProcess(
        "ingest",
        address,
        {
            "REDIS_URL": redis_stack.url,
            "TAPEWATCH_INGEST_ADDR": address,
            "TAPEWATCH_OTEL_EXPORTER": "otlp",
            "TAPEWATCH_OTEL_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        },
        tmp_path,
    ).start()
    try:
        await ingest.wait_serving()
        item = news_pb2.NewsItem(
            source="x",
            source_item_id="1",
            platform=news_pb2.PLATFORM_X,
            author="elonmusk",
            text="Doge to the moon",
        )
        item.published_at.FromDatetime(datetime.now(UTC))
        channel = insecure_channel(address, "replay")
        await ingest_pb2_grpc.IngestServiceStub(channel).Publish(ingest_pb2.PublishRequest(item=item))
        await channel.close()

        async def handler(m: Message) -> None:
            await asyncio.sleep(0)

        consumer = StreamConsumer(redis, "news.raw", "dedup", "d1", handler, label="dedup", block_ms=10)
        await consumer.ensure_group()
        await consumer.read_new()
        await asyncio.sleep(0.1)  # let the client span's done-callback end it
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp_port}", insecure=True)
        await asyncio.to_thread(exporter.export, list(spans.get_finished_spans()))  # the test's own spans

        def complete(c: object) -> bool:
            return any(
                ("ingest.Publish", "dedup consume news.raw") in collector.edges(t) for t in collector.spans
            )

        await collector.wait_for(complete, timeout_s=15)
        [trace_id] = [
            t for t in collector.spans if ("ingest.Publish", "dedup consume news.raw") in collector.edges(t)
        ]
        assert ("replay -> Publish", "ingest.Publish") in collector.edges(trace_id)
        stages = summarise(collector.spans[trace_id])["stages"]
        assert [s["name"] for s in stages] == [
            "replay -> Publish",
            "ingest.Publish",
            "dedup consume news.raw",
        ]
        assert {s["service"] for s in stages} >= {"ingest", "dedup"}
        assert all(s["latency_ms"] >= 0 for s in stages)
    finally:
        ingest.stop()
        await server.stop(0)
