"""Fixtures of the dedup tests: the real CPU model server (once per session), a dedup service on real
Redis Stack and gRPC, and helpers to put items on `news.raw`.
(`model_server` comes from tests/conftest.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from dedup_support import RunningDedup, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.dedup.service import serve
from services.dedup.settings import DedupSettings
from services.model_server.process import ModelServerProcess
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from tapewatch.dedup.v1 import dedup_pb2_grpc


@pytest.fixture
async def dedup_service(
    redis_stack: RedisStack, redis: aioredis.Redis, model_server: ModelServerProcess
) -> AsyncIterator[RunningDedup]:
    """The dedup service (consumers, sweeper, gRPC) in this process, on a clean Redis."""
    settings = DedupSettings.load(
        redis_url=redis_stack.url,
        dedup_addr=f"127.0.0.1:{free_port()}",
        model_server_addr=model_server.grpc_url,
        log_format="text",
        sweep_interval_s=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    channel = insecure_channel(settings.dedup_addr, "test")
    health = health_pb2_grpc.HealthStub(channel)

    async def serving() -> bool:
        if task.done():
            task.result()
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        except Exception:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    await wait_until(serving, 120, "dedup SERVING")
    yield RunningDedup(settings, dedup_pb2_grpc.DedupServiceStub(channel), redis)
    stop.set()
    await task
    await channel.close()
