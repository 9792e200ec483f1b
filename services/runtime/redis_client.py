"""Connecting to Redis: the embedded Redis Stack when REDIS_URL is unset, else the given server, which
must offer vector search (Redis 8, Redis Stack, or a managed Redis with the query engine)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.runtime.redis_server import RedisStack


class VectorSearchUnavailable(RuntimeError):
    pass


async def check_vector_search(client: aioredis.Redis) -> None:
    """Create and drop a tiny HNSW index: the only check that proves what the services need."""
    name = f"tw:probe:{uuid.uuid4().hex[:8]}"
    try:
        await client.execute_command(
            "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", f"{name}:", "SCHEMA",
            "v", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", "4", "DISTANCE_METRIC", "COSINE",
        )  # fmt: skip
        await client.execute_command("FT.DROPINDEX", name)
    except ResponseError as exc:
        raise VectorSearchUnavailable(
            f"Redis at {client.connection_pool.connection_kwargs.get('host', '?')}:"
            f"{client.connection_pool.connection_kwargs.get('port', '?')} has no vector search ({exc}). "
            "Use Redis 8, Redis Stack or a managed Redis with the query engine, or unset REDIS_URL "
            "to run the embedded Redis Stack."
        ) from exc


@contextlib.asynccontextmanager
async def open_redis(redis_url: str | None, data_dir: Path) -> AsyncIterator[aioredis.Redis]:
    """Yield a client; start (and later stop) the embedded Redis Stack when no URL is given."""
    embedded = None
    if redis_url is None:
        embedded = RedisStack(Path(data_dir) / "redis").start()
        redis_url = embedded.url
    client = aioredis.Redis.from_url(redis_url, decode_responses=False, health_check_interval=5)
    try:
        await client.ping()
        await check_vector_search(client)
        yield client
    finally:
        await client.aclose()
        if embedded:
            embedded.stop()
