"""IngestService: validate, normalise and store each item once on `news.raw`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import grpc
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind

from services.ingest.normalize import InvalidItem, validate
from services.ingest.settings import IngestSettings
from services.ingest.store import Prepared, RawNewsStore
from services.runtime.errors import InvalidArgument
from services.runtime.interceptors import Undecodable
from services.runtime.logs import setup_logging
from services.runtime.redis_client import open_redis
from services.runtime.server import GrpcServer, Registration, wait_for_shutdown_signal
from services.runtime.telemetry import setup_telemetry
from tapewatch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger("tapewatch.ingest")
tracer = trace.get_tracer("tapewatch.ingest")
items_counter = metrics.get_meter("tapewatch.ingest").create_counter(
    "tapewatch.ingest.items", description="items received, by outcome"
)
STREAM_BATCH = 256


def _now() -> datetime:
    return datetime.now(UTC)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, store: RawNewsStore, clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.clock = clock

    async def Publish(
        self, request: ingest_pb2.PublishRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.PublishResponse:
        try:
            item = validate(request.item, self.clock())
        except InvalidItem as exc:
            items_counter.add(1, {"outcome": "rejected"})
            raise InvalidArgument(f"invalid news item: {exc}") from None
        trace.get_current_span().set_attribute("tapewatch.item_id", item.id)
        result = await self.store.put(item)
        items_counter.add(1, {"outcome": "duplicate" if result.duplicate else "accepted"})
        return ingest_pb2.PublishResponse(
            item_id=result.item_id, duplicate=result.duplicate, stream_entry_id=result.entry_id
        )

    async def PublishStream(
        self, request_iterator: AsyncIterator[ingest_pb2.PublishRequest], context: grpc.aio.ServicerContext
    ) -> ingest_pb2.PublishSummary:
        """Each item becomes its own trace (a root span linked to this call); valid items are written in
        batches and kept whatever else the stream carries."""
        summary = ingest_pb2.PublishSummary()
        call_link = trace.Link(trace.get_current_span().get_span_context())
        batch: list[tuple[trace.Span, Prepared]] = []

        async def flush() -> None:
            results = await self.store.put_prepared([p for _, p in batch])
            for (span, _), result in zip(batch, results, strict=True):
                span.set_attribute("tapewatch.duplicate", result.duplicate)
                span.end()
                if result.duplicate:
                    summary.duplicates += 1
                else:
                    summary.accepted += 1
            items_counter.add(len(batch), {"outcome": "stored"})
            batch.clear()

        index = 0
        async for request in request_iterator:
            summary.received += 1
            try:
                if isinstance(request, Undecodable):
                    raise InvalidItem(request.reason("PublishRequest"))
                item = validate(request.item, self.clock())
            except InvalidItem as exc:
                source_item_id = "" if isinstance(request, Undecodable) else request.item.source_item_id
                summary.rejected.add(
                    index=index, source_item_id=source_item_id, code="INVALID_ARGUMENT", reason=str(exc)
                )
                items_counter.add(1, {"outcome": "rejected"})
            else:
                span = tracer.start_span(
                    "ingest.item",
                    context=otel_context.Context(),
                    kind=SpanKind.PRODUCER,
                    links=[call_link],
                    attributes={"tapewatch.item_id": item.id, "tapewatch.service": "ingest"},
                )
                with trace.use_span(span, end_on_exit=False):
                    batch.append((span, self.store.prepare(item)))
                if len(batch) >= STREAM_BATCH:
                    await flush()
            index += 1
        if batch:
            await flush()
        return summary


async def serve(settings: IngestSettings, stop: asyncio.Event | None = None) -> None:
    setup_logging("ingest", settings.log_level, settings.log_format)
    setup_telemetry("ingest", settings.otel_exporter, settings.otel_endpoint)
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        store = RawNewsStore(redis, settings.raw_stream, settings.seen_ttl_s, settings.stream_maxlen)
        server = GrpcServer(
            "ingest",
            settings.listen,
            [
                Registration(
                    ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
                    ingest_pb2_grpc.add_IngestServiceServicer_to_server,
                    IngestServicer(store),
                )
            ],
            checks={"redis": redis.ping},
        )
        await server.start()
        try:
            await wait_for_shutdown_signal(stop)
        finally:
            await server.stop(settings.shutdown_grace_s)
