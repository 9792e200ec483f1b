"""A window indexed by one embedder is never searched with another: vectors of two models do not compare,
even when they have the same size (the base model against its crypto fine-tune)."""

from __future__ import annotations

import numpy as np
import pytest
import redis.asyncio as aioredis

from services.dedup.store import IndexMismatch, StoryStore

pytestmark = pytest.mark.integration


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


async def test_the_same_embedder_reopens_its_window(redis: aioredis.Redis) -> None:
    probe = unit(1)
    await StoryStore(redis).ensure_index(384, probe)
    jitter = probe + np.float32(1e-4) * unit(2)  # float noise of another batch shape
    await StoryStore(redis).ensure_index(384, jitter / np.linalg.norm(jitter))


async def test_another_embedder_of_the_same_size_is_refused_with_the_way_out(redis: aioredis.Redis) -> None:
    await StoryStore(redis).ensure_index(384, unit(1))
    with pytest.raises(IndexMismatch, match=r"another embedder \(probe cosine .*--fresh"):
        await StoryStore(redis).ensure_index(384, unit(3))


async def test_another_size_is_refused(redis: aioredis.Redis) -> None:
    await StoryStore(redis).ensure_index(384, unit(1))
    with pytest.raises(IndexMismatch, match="holds 384-dimensional vectors but the embedder gives 1024"):
        await StoryStore(redis).ensure_index(1024, unit(1, 1024))
