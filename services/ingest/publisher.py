"""Pump a source into the ingest service over gRPC: one Publish per item (each item its own trace),
a bounded number in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from services.ingest.sources.base import Source
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from tapewatch.news.v1 import news_pb2


@dataclass
class PublishTally:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


async def publish_source(
    source: Source,
    stub: ingest_pb2_grpc.IngestServiceStub,
    in_flight: int = 32,
    deadline_s: float = 5.0,
    on_item: Callable[[PublishTally], None] | None = None,
) -> PublishTally:
    tally = PublishTally()
    slots = asyncio.Semaphore(in_flight)
    tasks: set[asyncio.Task[None]] = set()

    async def one(item: news_pb2.NewsItem) -> None:
        try:
            reply = await stub.Publish(ingest_pb2.PublishRequest(item=item), timeout=deadline_s)
            if reply.duplicate:
                tally.duplicates += 1
            else:
                tally.accepted += 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            tally.rejected += 1
            reason = (exc.details() or "").split(":", 1)[-1].strip()[:80]
            tally.reasons[reason] = tally.reasons.get(reason, 0) + 1
        finally:
            slots.release()
            if on_item:
                on_item(tally)

    async for item in source.items():
        await slots.acquire()
        tally.sent += 1
        task = asyncio.create_task(one(item))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return tally
