"""Fixtures for the analysis tests: the real CPU model server (one per session), the analysis service wired
to the test's Redis Stack, and a local HTTP server that records the alert requests.
(`model_server` is in tests/conftest.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from analysis_harness import Harness, Recorder, analysis_settings, start_harness

from services.model_client import ModelClient
from services.model_server.process import ModelServerProcess


@pytest.fixture
async def analysis(
    redis: aioredis.Redis, model_server: ModelServerProcess, model_client: ModelClient, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The service on the real model server, with default settings."""
    async for harness in start_harness(
        redis, analysis_settings(tmp_path, model_server.grpc_url), model_client
    ):
        yield harness


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    yield rec
    await runner.cleanup()
