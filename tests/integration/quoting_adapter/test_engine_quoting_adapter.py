"""The reference engine against a real quoting adapter: it applies the adapter's params as they change
and feeds its mids back as market state; `tapewatch engine` and `tapewatch quoting` as processes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from quoting_adapter_support import BEARISH, Running, approved_signal, publish_signal

from quoting.engine import Bar
from services.pipeline.supervisor import ServiceProcess
from services.quoting_adapter.clock import ManualClock
from services.quoting_adapter.engine_client import ParamsFeed, run_engine
from services.quoting_adapter.settings import EngineSettings
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from tapewatch.quoting.v1 import quoting_pb2, quoting_pb2_grpc

pytestmark = pytest.mark.integration


def bars(n: int, start: datetime) -> list[Bar]:
    """A gently oscillating DOGE-like series of 1-minute bars."""
    return [Bar(start + timedelta(minutes=i), 0.25 * (1 + 0.002 * math.sin(i / 3)), 1000.0) for i in range(n)]


async def until(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_engine_applies_params_as_they_change_and_pushes_mids(
    quoting: Running, redis: aioredis.Redis, clock: ManualClock
) -> None:
    series = bars(30, datetime(2021, 2, 4, 8, 0, tzinfo=UTC))
    settings = EngineSettings(asset="doge", stamp="original", quoting_addr=f"127.0.0.1:{quoting.server.port}")
    channel = insecure_channel(settings.quoting_addr, "engine-test")
    feed = ParamsFeed(quoting_pb2_grpc.QuotingServiceStub(channel), ["DOGE"])
    lines: list[dict[str, Any]] = []

    async def mids() -> AsyncIterator[tuple[datetime, float]]:
        for i, bar in enumerate(series):
            if i == 10:
                signal = approved_signal("sig-eng", clock.now(), ("DOGE", 20, 10, 1.5, 30, BEARISH))
                await publish_signal(redis, signal)
                await until(lambda: bool(feed.params("DOGE").signal_ids))
            if i == 20:
                await quoting.stub.ClearAll(quoting_pb2.ClearAllRequest(reason="test", requested_by="rm"))
                await until(lambda: feed.params("DOGE").kill_switch)
            yield bar.time, bar.close

    mm = await run_engine(settings, mids(), lines.append, feed=feed)
    await channel.close()

    assert len(lines) == 30 and mm.inventory == 0
    base, signalled, killed = lines[:10], lines[10:20], lines[20:]
    assert all(not line["signal_ids"] for line in base + killed)
    assert all(line["signal_ids"] == ["sig-eng"] for line in signalled)
    assert all(line["kill_switch"] for line in killed)
    for line in signalled:  # wider, and lower: the bid side (bearish) moved most
        assert line["spread_bps"] > max(b["spread_bps"] for b in base) + 40
        assert line["mid"] - line["bid"] > line["ask"] - line["mid"]
    for quote in base + killed:
        assert quote["bid"] < quote["mid"] < quote["ask"]
        assert quote["spread_bps"] < min(s["spread_bps"] for s in signalled)

    entries = await redis.xrange("tw:market:DOGE")
    assert [int(f[b"time_ms"]) for _, f in entries] == [int(b.time.timestamp() * 1000) for b in series]
    assert [float(f[b"mid"]) for _, f in entries] == [b.close for b in series]


async def test_quoting_and_engine_commands_run_as_processes(
    redis: aioredis.Redis, redis_stack: RedisStack, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {"REDIS_URL": redis_stack.url, "TAPEWATCH_QUOTING_ADDR": address, "TAPEWATCH_LOG_FORMAT": "text"}
    service = ServiceProcess("quoting", address, env, tmp_path).start()
    try:
        await service.wait_serving()
        engine = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "engine",
            "--prices",
            "-",
            "--asset",
            "SOL",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
        mids = b"time,mid\n2022-01-01T00:00:00,170.0\n2022-01-01T00:01:00,170.5\n171.0\n"
        out, err = await asyncio.wait_for(engine.communicate(mids), 60)
        assert engine.returncode == 0, err.decode()
        quotes = [json.loads(line) for line in out.decode().splitlines()]
        assert [q["mid"] for q in quotes] == [170.0, 170.5, 171.0]
        assert all(q["asset"] == "SOL" and q["bid"] < q["mid"] < q["ask"] for q in quotes)
        assert await redis.xlen("tw:market:SOL") == 3
    finally:
        service.stop()
