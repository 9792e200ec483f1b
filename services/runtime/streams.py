"""Redis Streams as the pipeline's durable queues: publish with trace context, consumer groups,
acknowledge only after the handler stored its result, reclaim what a dead consumer left pending, and
dead-letter after N failed deliveries with the reason kept.

A message has: `data` (a serialised protobuf), `key` (the item id: handlers are idempotent on it),
and the W3C trace context (`traceparent`, `tracestate`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from redis.exceptions import ResponseError

from services.runtime.telemetry import extract, inject

log = logging.getLogger("tapewatch.streams")
tracer = trace.get_tracer("tapewatch.streams")
meter = metrics.get_meter("tapewatch.streams")
hop_lag = meter.create_histogram("tapewatch.stream.lag", unit="ms", description="publish to consume")
handled = meter.create_counter("tapewatch.stream.messages", description="messages handled, by outcome")


class Reject(Exception):
    """The message can never be processed (bad input): dead-letter it now, do not retry."""


def message_fields(data: bytes, key: str, **extra: str) -> dict[str, bytes | str]:
    """A message's fields with the current trace context."""
    fields: dict[str, bytes | str] = {"data": data, "key": key, **extra}
    carrier: dict[str, str] = {}
    inject(carrier)
    fields.update(carrier)
    return fields


async def publish(
    redis: aioredis.Redis, stream: str, data: bytes, key: str, maxlen: int | None = None, **extra: str
) -> str:
    with tracer.start_as_current_span(
        f"publish {stream}", kind=SpanKind.PRODUCER, attributes={"messaging.destination.name": stream}
    ):
        entry = await redis.xadd(stream, message_fields(data, key, **extra), maxlen=maxlen, approximate=True)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


@dataclass
class Message:
    stream: str
    entry_id: str
    fields: dict[str, bytes]
    deliveries: int = 1

    @property
    def data(self) -> bytes:
        return self.fields.get("data", b"")

    @property
    def key(self) -> str:
        return self.fields.get("key", b"").decode(errors="replace")

    @property
    def trace_carrier(self) -> dict[str, str]:
        return {k: v.decode() for k, v in self.fields.items() if k in ("traceparent", "tracestate")}

    @property
    def published_ms(self) -> int:
        return int(self.entry_id.split("-", 1)[0])


Handler = Callable[[Message], Awaitable[None]]


def dead_letter_stream(stream: str) -> str:
    return f"{stream}.dead"


@dataclass
class StreamConsumer:
    """One consumer of a consumer group. Run several (processes or tasks) to scale a stage."""

    redis: aioredis.Redis
    stream: str
    group: str
    name: str
    handler: Handler
    label: str = "consumer"
    batch: int = 32
    block_ms: int = 500
    reclaim_idle_ms: int = 30_000
    max_deliveries: int = 5
    concurrency: int = 1
    stats: dict[str, int] = field(
        default_factory=lambda: {"acked": 0, "failed": 0, "dead": 0, "reclaimed": 0}
    )

    @property
    def failures_key(self) -> str:
        return f"tw:failures:{self.stream}:{self.group}"

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        next_reclaim = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_reclaim:
                    await self.reclaim()
                    next_reclaim = time.monotonic() + max(self.reclaim_idle_ms / 2000, 0.05)
                await self.read_new()
            except (ConnectionError, OSError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
                log.warning("%s: redis unavailable (%s); retrying", self.label, exc)
                await asyncio.sleep(0.5)

    async def read_new(self) -> int:
        reply = await self.redis.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=self.batch, block=self.block_ms
        )
        messages = [
            Message(self.stream, _s(entry_id), {_s(k): v for k, v in fields.items()})
            for _, entries in reply or []
            for entry_id, fields in entries
            if fields is not None
        ]
        await self._handle_all(messages)
        return len(messages)

    async def reclaim(self) -> int:
        """Take over messages another (dead) consumer left pending longer than reclaim_idle_ms."""
        _, entries, *_ = await self.redis.xautoclaim(
            self.stream, self.group, self.name, min_idle_time=self.reclaim_idle_ms, count=self.batch
        )
        messages = [
            Message(self.stream, _s(entry_id), {_s(k): v for k, v in fields.items()})
            for entry_id, fields in entries
            if fields is not None
        ]
        if not messages:
            return 0
        pending = await self.redis.xpending_range(
            self.stream,
            self.group,
            min=messages[0].entry_id,
            max=messages[-1].entry_id,
            count=len(messages) * 2,
        )
        deliveries = {_s(p["message_id"]): int(p["times_delivered"]) for p in pending}
        for m in messages:
            m.deliveries = deliveries.get(m.entry_id, 1)
        self.stats["reclaimed"] += len(messages)
        log.info("%s: reclaimed %d pending messages", self.label, len(messages))
        await self._handle_all(messages)
        return len(messages)

    async def _handle_all(self, messages: list[Message]) -> None:
        if self.concurrency <= 1 or len(messages) <= 1:
            for m in messages:
                await self._handle(m)
            return
        sem = asyncio.Semaphore(self.concurrency)

        async def one(m: Message) -> None:
            async with sem:
                await self._handle(m)

        await asyncio.gather(*(one(m) for m in messages))

    async def _handle(self, m: Message) -> None:
        parent = extract(m.trace_carrier)
        token = otel_context.attach(parent)
        try:
            with tracer.start_as_current_span(
                f"{self.label} consume {self.stream}",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.destination.name": self.stream,
                    "messaging.consumer.group.name": self.group,
                    "messaging.message.id": m.entry_id,
                    "tapewatch.service": self.label,
                    "tapewatch.deliveries": m.deliveries,
                },
            ) as span:
                hop_lag.record(max(0, time.time() * 1000 - m.published_ms), {"stream": self.stream})
                if m.deliveries > self.max_deliveries:
                    await self._dead_letter(m, f"delivered {m.deliveries} times without an ack")
                    return
                try:
                    await self.handler(m)
                except Reject as exc:
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    await self._dead_letter(m, f"rejected: {exc}")
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, repr(exc)))
                    await self._failed(m, exc)
                    return
                await self.redis.xack(self.stream, self.group, m.entry_id)
                self.stats["acked"] += 1
                handled.add(1, {"stream": self.stream, "outcome": "acked"})
        finally:
            otel_context.detach(token)

    async def _failed(self, m: Message, exc: Exception) -> None:
        """Keep the reason; the message stays pending and is retried after reclaim_idle_ms."""
        self.stats["failed"] += 1
        handled.add(1, {"stream": self.stream, "outcome": "failed"})
        reason = f"{type(exc).__name__}: {exc}"
        failures = await self.redis.hincrby(self.failures_key, f"{m.entry_id}:count", 1)
        await self.redis.hset(self.failures_key, f"{m.entry_id}:reason", reason)
        log.warning("%s: message %s failed (%d): %s", self.label, m.entry_id, failures, reason)
        if failures >= self.max_deliveries:
            await self._dead_letter(m, f"failed {failures} times; last: {reason}")

    async def _dead_letter(self, m: Message, reason: str) -> None:
        self.stats["dead"] += 1
        handled.add(1, {"stream": self.stream, "outcome": "dead"})
        dead = dict(m.fields)
        dead.update(
            {
                "dead.reason": reason.encode(),
                "dead.stream": self.stream.encode(),
                "dead.entry_id": m.entry_id.encode(),
                "dead.group": self.group.encode(),
                "dead.deliveries": str(m.deliveries).encode(),
                "dead.at_ms": str(int(time.time() * 1000)).encode(),
            }
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(dead_letter_stream(self.stream), dead)  # type: ignore[arg-type]
            pipe.xack(self.stream, self.group, m.entry_id)
            pipe.hdel(self.failures_key, f"{m.entry_id}:count", f"{m.entry_id}:reason")
            await pipe.execute()
        log.error("%s: dead-lettered %s: %s", self.label, m.entry_id, reason)


async def dead_letters(redis: aioredis.Redis, stream: str, count: int = 100) -> list[dict[str, str]]:
    """The dead-letter entries of a stream, newest last, fields decoded where they are text."""
    entries = await redis.xrange(dead_letter_stream(stream), count=count)
    out = []
    for entry_id, fields in entries:
        doc = {_s(k): _s(v) if _s(k) != "data" else v.hex() for k, v in fields.items()}
        doc["entry_id"] = _s(entry_id)
        out.append(doc)
    return out


def _s(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else v


def dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"), default=str)
