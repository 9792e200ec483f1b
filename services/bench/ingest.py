"""Ingest throughput and latency: items through gRPC into Redis.

Starts a Redis Stack and the ingest service as separate processes, as deployed, then measures
(1) PublishStream throughput for --items items, (2) unary Publish latency paced at --rate items/s, and
(3) the reference: the same items written straight into Redis by one pipelined client (no gRPC, no
validation), so `vs_bare_redis` says what the service costs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from services.bench.machine import machine, percentile
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource, default_replay_csv
from services.pipeline.supervisor import ServiceProcess
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tapewatch.news.v1 import news_pb2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--items", type=int, default=10_000, help="items pushed through PublishStream")
    parser.add_argument("--rate", type=float, default=200.0, help="paced unary Publish rate for latency")
    parser.add_argument("--latency-items", type=int, default=2000)


def _items(n: int, tag: str) -> list[news_pb2.NewsItem]:
    """Real headlines, repeated with distinct source ids so every item is new."""
    real = CsvReplaySource(CsvReplayConfig(path=default_replay_csv(), limit=500)).load()
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        item = news_pb2.NewsItem()
        item.CopyFrom(real[i % len(real)])
        item.source_item_id = f"{tag}-{i}"
        item.published_at.FromDatetime(now)
        out.append(item)
    return out


async def _stream(
    stub: ingest_pb2_grpc.IngestServiceStub, items: list[news_pb2.NewsItem]
) -> tuple[float, int]:
    async def requests() -> AsyncIterator[ingest_pb2.PublishRequest]:
        for item in items:
            yield ingest_pb2.PublishRequest(item=item)

    started = time.perf_counter()
    summary = await stub.PublishStream(requests(), timeout=600)
    return time.perf_counter() - started, summary.accepted


async def _paced(
    stub: ingest_pb2_grpc.IngestServiceStub, items: list[news_pb2.NewsItem], rate: float
) -> list[float]:
    latencies: list[float] = []

    async def one(item: news_pb2.NewsItem) -> None:
        t0 = time.perf_counter()
        await stub.Publish(ingest_pb2.PublishRequest(item=item), timeout=10)
        latencies.append((time.perf_counter() - t0) * 1000)

    loop = asyncio.get_running_loop()
    gc.collect()
    gc.freeze()  # the client's own GC pauses are not the service's latency
    start = loop.time()
    tasks = []
    for i, item in enumerate(items):
        await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        tasks.append(asyncio.create_task(one(item)))
    await asyncio.gather(*tasks)
    return latencies


async def _bare_redis(url: str, items: list[news_pb2.NewsItem]) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        started = time.perf_counter()
        for i in range(0, len(items), 256):
            async with client.pipeline(transaction=False) as pipe:
                for item in items[i : i + 256]:
                    pipe.set(f"bare:seen:{item.source_item_id}", 1, nx=True, ex=600)
                    pipe.xadd("bare.raw", {"data": item.SerializeToString(), "key": item.source_item_id})
                await pipe.execute()
        return time.perf_counter() - started
    finally:
        await client.aclose()


async def _bench(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="tw-bench-ingest-") as tmp:
        redis = RedisStack(Path(tmp) / "redis").start()
        address = f"127.0.0.1:{free_port()}"
        ingest = ServiceProcess(
            "ingest", address, {"REDIS_URL": redis.url, "TAPEWATCH_INGEST_ADDR": address}, Path(tmp) / "logs"
        ).start()
        try:
            await ingest.wait_serving()
            channel = insecure_channel(address, "bench")
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            await _stream(stub, _items(200, "warmup"))
            stream_items = _items(args.items, "stream")
            stream_s, accepted = await _stream(stub, stream_items)
            latencies = await _paced(stub, _items(args.latency_items, "paced"), args.rate)
            await channel.close()
            bare_s = await _bare_redis(redis.url, _items(args.items, "bare"))
        finally:
            ingest.stop()
            redis.stop()
    items_per_s = accepted / stream_s
    bare_per_s = args.items / bare_s
    return {
        "bench": "ingest",
        "items": args.items,
        "accepted": accepted,
        "items_per_s": round(items_per_s, 1),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "latency_rate_per_s": args.rate,
        "latency_items": len(latencies),
        "reference": {"bare_redis_items_per_s": round(bare_per_s, 1)},
        "vs_bare_redis": round(items_per_s / bare_per_s, 3),
        "targets": {"items_per_s": ">= 2000", "p99_ms": "< 5 at 200 items/s"},
        "machine": machine(),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    return asyncio.run(_bench(args))
