"""Shared fixtures: a real Redis Stack and a real CPU model server per test session, Redis clean per test,
and in-memory trace capture."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.model_client import ModelClient
from services.model_server.process import ModelServerProcess
from services.runtime.redis_server import RedisStack

SPANS = InMemorySpanExporter()
_provider = TracerProvider(resource=Resource.create({"service.name": "tapewatch-tests"}))
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tracer_provider() -> TracerProvider:
    return _provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    SPANS.clear()
    yield SPANS


@pytest.fixture(scope="session")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisStack]:
    with RedisStack(tmp_path_factory.mktemp("redis-stack")) as server:
        yield server


@pytest.fixture
async def redis(redis_stack: RedisStack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_stack.url)
    await client.flushall()
    yield client
    await client.aclose()


class ModelServer(ModelServerProcess):
    """The real CPU model server; `paused()` freezes it (SIGSTOP) to play a hung server."""

    @contextmanager
    def paused(self) -> Iterator[None]:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """One real CPU model server (Triton via PyTriton, `embedder` and `llm`) per test session."""
    env = {"TAPEWATCH_LOG_FORMAT": "text", "TAPEWATCH_LLM_CONTEXT": "4096", "TAPEWATCH_CONFIG": ""}
    server = ModelServer(tmp_path_factory.mktemp("model-server"), env)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
async def model_client(model_server: ModelServer) -> AsyncIterator[ModelClient]:
    async with ModelClient(model_server.grpc_url, deadline_s=120, retries=2) as client:
        yield client


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
