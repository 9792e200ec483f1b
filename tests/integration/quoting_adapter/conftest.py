"""Quoting adapter instances on real gRPC servers (loopback) and a real Redis Stack, with a hand-moved
clock (see quoting_adapter_support.py for the helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from quoting_adapter_support import Running, StartAdapter, settings

from services.quoting_adapter.clock import ManualClock
from services.quoting_adapter.service import QuotingAdapter
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack
from services.runtime.server import GrpcServer
from tapewatch.quoting.v1 import quoting_pb2_grpc


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def start_adapter(
    redis: aioredis.Redis, redis_stack: RedisStack, clock: ManualClock
) -> AsyncIterator[StartAdapter]:
    """Start an adapter instance (each with its own Redis client) on the test's Redis; several may run."""
    running: list[Running] = []

    async def start(**overrides: Any) -> Running:
        client = aioredis.Redis.from_url(redis_stack.url)
        adapter = QuotingAdapter(client, settings(**overrides), clock)
        await adapter.start()
        server = GrpcServer(
            "quoting",
            "127.0.0.1:0",
            [adapter.registration],
            checks={"redis": client.ping, "changes": adapter.live.check_synced},
        )
        await server.start()
        channel = insecure_channel(f"127.0.0.1:{server.port}", "test")
        r = Running(adapter, server, channel, quoting_pb2_grpc.QuotingServiceStub(channel), client)
        running.append(r)
        return r

    yield start
    for r in running:
        await r.stop()


@pytest.fixture
async def quoting(start_adapter: StartAdapter) -> Running:
    return await start_adapter()
