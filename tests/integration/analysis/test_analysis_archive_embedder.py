"""The archive's vectors follow the embedder: when the model server starts serving another embedder, the hot
stories are embedded again at start, so Ask never compares a question with another model's vectors; with
the same embedder nothing is embedded again."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from analysis_harness import analysis_settings

from services.analysis.archive import PREFIX, Archive
from services.analysis.service import open_archive
from services.model_client import ModelClient
from services.model_client.fingerprint import PROBE_TEXT, as_bytes, same_embedder
from services.model_server.process import ModelServerProcess

pytestmark = pytest.mark.integration

STORIES = {
    "st_etf": "SEC approves spot Bitcoin ETF applications from BlackRock and Fidelity",
    "st_hack": "Hackers drain $40M from a Binance hot wallet",
    "st_doge": "Elon Musk says Tesla will accept Dogecoin for merchandise",
}


def other_embedders_vector(dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


async def put_stories(archive: Archive, dim: int) -> None:
    now = int(time.time() * 1000)
    for n, (story_id, text) in enumerate(STORIES.items()):
        record = {
            "story_id": story_id, "author": "newswire", "platform": "newswire", "assets": ["BTC"],
            "materiality": "high", "event_type": "other", "published_ms": now - 1000 * n, "text": text,
            "analysed_ms": now,
        }  # fmt: skip
        await archive.put(record, other_embedders_vector(dim, n))


async def stored_vector(redis: aioredis.Redis, story_id: str) -> np.ndarray:
    return np.frombuffer(await redis.hget(PREFIX + story_id, "embedding"), dtype=np.float32)


async def test_archive_is_embedded_again_when_the_embedder_changes(
    redis: aioredis.Redis, model_server: ModelServerProcess, model_client: ModelClient, tmp_path: Path
) -> None:
    settings = analysis_settings(tmp_path, model_server.grpc_url)
    archive = await open_archive(settings, redis, model_client)
    probe = (await model_client.embed([PROBE_TEXT]))[0]
    assert same_embedder(await redis.hget(archive.meta, "probe"), probe)

    # Stories whose vectors another embedder of the same size made, and that embedder's fingerprint.
    await put_stories(archive, archive.dim)
    await redis.hset(archive.meta, "probe", as_bytes(other_embedders_vector(archive.dim, 99)))
    archive = await open_archive(settings, redis, model_client)

    assert same_embedder(await redis.hget(archive.meta, "probe"), probe)
    expected = await model_client.embed(list(STORIES.values()))
    for story_id, vector in zip(STORIES, expected, strict=True):
        assert float(await stored_vector(redis, story_id) @ vector) > 0.999
    question = (await model_client.embed(["did a crypto exchange get hacked?"]))[0]
    found = await archive.search(0, int(time.time() * 1000) + 1, vector=question, limit=3)
    assert found[0].story_id == "st_hack"
    assert await redis.ttl(PREFIX + "st_hack") > 0  # still expires as a hot copy does

    # Same embedder at the next start: nothing is embedded again.
    marker = other_embedders_vector(archive.dim, 7)
    await redis.hset(PREFIX + "st_doge", "embedding", marker.tobytes())
    await open_archive(settings, redis, model_client)
    assert np.array_equal(await stored_vector(redis, "st_doge"), marker)


async def test_archive_without_an_embedder_at_start_keeps_its_fingerprint(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    settings = analysis_settings(tmp_path, "127.0.0.1:1")
    fingerprint = as_bytes(other_embedders_vector(settings.embedding_dim, 1))
    archive = Archive(redis, tmp_path, settings.hot_ttl_s, settings.embedding_dim)
    await redis.hset(archive.meta, "probe", fingerprint)
    archive = await open_archive(settings, redis, None)
    assert await redis.hget(archive.meta, "probe") == fingerprint
