"""Health follows Redis: NOT_SERVING while it is down, SERVING again when it returns, no restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.ingest.service import serve
from services.ingest.settings import IngestSettings
from services.runtime.redis_server import RedisStack, free_port

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def wait_status(stub: health_pb2_grpc.HealthStub, want: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service="tapewatch.ingest.v1.IngestService")
            )
            last = reply.status
            if last == want:
                return
        except grpc.aio.AioRpcError as exc:
            last = exc.code()
        await asyncio.sleep(0.1)
    raise AssertionError(f"health stayed {last}, wanted {want}")


async def test_health_follows_redis_without_restart(tmp_path: Path) -> None:
    redis_port, grpc_port = free_port(), free_port()
    redis = RedisStack(tmp_path / "redis", port=redis_port).start()
    settings = IngestSettings.load(
        redis_url=redis.url, ingest_addr=f"127.0.0.1:{grpc_port}", log_format="text"
    )
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, stop))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await wait_status(stub, SERVING)
            redis.kill()
            await wait_status(stub, NOT_SERVING)
            redis = RedisStack(tmp_path / "redis", port=redis_port).start()
            await wait_status(stub, SERVING)
    finally:
        stop.set()
        await service
        redis.stop()
