"""Stream helpers on a real Redis Stack: ack after store, reclaim from a killed consumer, dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace

from services.runtime.redis_server import RedisStack
from services.runtime.streams import Message, Reject, StreamConsumer, dead_letters, publish

pytestmark = pytest.mark.integration


async def drain(consumer: StreamConsumer, rounds: int = 3) -> None:
    await consumer.ensure_group()
    for _ in range(rounds):
        await consumer.reclaim()
        await consumer.read_new()


async def test_ack_only_after_handler_stored_the_result(redis: aioredis.Redis) -> None:
    stored: list[str] = []

    async def handler(m: Message) -> None:
        pending = await redis.xpending("s.ack", "g")
        assert pending["pending"] == 1  # not acknowledged while the handler runs
        stored.append(m.key)

    await publish(redis, "s.ack", b"payload", "item-1")
    consumer = StreamConsumer(redis, "s.ack", "g", "c1", handler, block_ms=10)
    await drain(consumer, 1)
    assert stored == ["item-1"]
    assert (await redis.xpending("s.ack", "g"))["pending"] == 0


async def test_trace_context_travels_inside_the_message(redis: aioredis.Redis, spans) -> None:
    seen: list[int] = []

    async def handler(m: Message) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    with trace.get_tracer("test").start_as_current_span("ingest") as root:
        await publish(redis, "s.trace", b"x", "k")
    await drain(StreamConsumer(redis, "s.trace", "g", "c1", handler, block_ms=10), 1)
    assert seen == [root.get_span_context().trace_id]
    names = {s.name: s for s in spans.get_finished_spans()}
    consume = names["consumer consume s.trace"]
    assert consume.parent is not None and consume.parent.span_id == names["publish s.trace"].context.span_id


async def test_failures_retry_then_dead_letter_with_reason(redis: aioredis.Redis) -> None:
    calls = 0

    async def handler(m: Message) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("model server said no")

    await publish(redis, "s.fail", b"x", "k1")
    consumer = StreamConsumer(
        redis, "s.fail", "g", "c1", handler, block_ms=10, reclaim_idle_ms=0, max_deliveries=3
    )
    await drain(consumer, 5)
    assert calls == 3
    dead = await dead_letters(redis, "s.fail")
    assert len(dead) == 1
    assert dead[0]["key"] == "k1" and "failed 3 times" in dead[0]["dead.reason"]
    assert "model server said no" in dead[0]["dead.reason"]
    assert (await redis.xpending("s.fail", "g"))["pending"] == 0


async def test_reject_dead_letters_at_once(redis: aioredis.Redis) -> None:
    calls = 0

    async def handler(m: Message) -> None:
        nonlocal calls
        calls += 1
        raise Reject("text is empty after normalisation")

    await publish(redis, "s.bad", b"", "k2")
    await drain(StreamConsumer(redis, "s.bad", "g", "c1", handler, block_ms=10, reclaim_idle_ms=0), 3)
    assert calls == 1
    [dead] = await dead_letters(redis, "s.bad")
    assert dead["dead.reason"] == "rejected: text is empty after normalisation"


CONSUMER_THAT_HANGS = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from services.runtime.streams import StreamConsumer

    async def main():
        r = aioredis.Redis.from_url(sys.argv[1])
        async def handler(m):
            print("got", m.key, flush=True)
            await asyncio.sleep(3600)  # killed here, mid-message
        c = StreamConsumer(r, "s.kill", "g", "doomed", handler, block_ms=100)
        await c.ensure_group()
        await c.read_new()

    asyncio.run(main())
    """
)


async def test_message_of_killed_consumer_is_reclaimed(
    redis: aioredis.Redis, redis_stack: RedisStack
) -> None:
    await StreamConsumer(redis, "s.kill", "g", "x", lambda m: asyncio.sleep(0)).ensure_group()
    await publish(redis, "s.kill", b"x", "story-42")
    doomed = subprocess.Popen(  # noqa: ASYNC220 - a real process, killed below
        [sys.executable, "-c", CONSUMER_THAT_HANGS, redis_stack.url], stdout=subprocess.PIPE, text=True
    )
    assert doomed.stdout is not None
    line = await asyncio.to_thread(doomed.stdout.readline)
    assert line.strip() == "got story-42"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    doomed.stdout.close()

    done: list[str] = []

    async def handler(m: Message) -> None:
        done.append(m.key)

    rescuer = StreamConsumer(redis, "s.kill", "g", "rescuer", handler, block_ms=10, reclaim_idle_ms=200)
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        await drain(rescuer, 1)
        await asyncio.sleep(0.05)
    assert done == ["story-42"]
    assert rescuer.stats["reclaimed"] == 1
    assert (await redis.xpending("s.kill", "g"))["pending"] == 0
