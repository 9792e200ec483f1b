"""Every analysed story, for history and for Ask: hot in Redis with a TTL (one hash per story, in a vector
index with its author, time and assets), and appended to a JSONL file per UTC day under
`<data_dir>/analysis/archive/`. The hash's `done` field is set once the signal and alerts went out, so a
redelivered story is acknowledged without a second signal.

The index keeps the fingerprint of the embedder that made its vectors (services/model_client/fingerprint.py).
When the model server starts serving another embedder of the same size, the hot stories are embedded again
from their text (reembed) before the new fingerprint is stored, so Ask never compares a question's vector
with vectors of another model."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from services.model_client.fingerprint import as_bytes, same_embedder

log = logging.getLogger("tapewatch.analysis")

PREFIX = "tw:analysis:story:"
Embed = Callable[[str], Awaitable[npt.NDArray[np.float32] | None]]
EmbedMany = Callable[[list[str]], Awaitable[npt.NDArray[np.float32]]]
EMBED_CHARS = 2000  # what is embedded of a story's text
REEMBED_BATCH = 64
_SET_IF_STILL_HOT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], 'embedding', ARGV[1]) end
return -1
"""
_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")


def tag(value: str) -> str:
    """A TAG value escaped for a query."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


@dataclass(frozen=True)
class StoredStory:
    story_id: str
    author: str
    published_ms: int
    text: str
    materiality: str
    event_type: str
    assets: tuple[str, ...]
    similarity: float | None = None


class Archive:
    def __init__(self, redis: aioredis.Redis, directory: Path, hot_ttl_s: int, embedding_dim: int) -> None:
        self.redis = redis
        self.directory = directory
        self.hot_ttl_s = hot_ttl_s
        self.dim = embedding_dim
        self.index = f"tw:analysis:stories:{embedding_dim}"
        self.meta = f"{self.index}:meta"
        self._write = asyncio.Lock()

    async def ensure_index(self, probe: npt.NDArray[np.float32] | None = None) -> bool:
        """Create the index if missing. True when `probe` (the embedder's vector for PROBE_TEXT) shows that
        the stored vectors were made by another embedder: call reembed()."""
        try:
            await self.redis.execute_command(
                "FT.CREATE", self.index, "ON", "HASH", "PREFIX", "1", PREFIX, "SCHEMA",
                "author", "TAG", "platform", "TAG", "assets", "TAG", "materiality", "TAG",
                "published_ms", "NUMERIC", "SORTABLE", "text", "TEXT",
                "embedding", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", str(self.dim),
                "DISTANCE_METRIC", "COSINE",
            )  # fmt: skip
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        if probe is None:
            return False
        await self.redis.hsetnx(self.meta, "probe", as_bytes(probe))
        return not same_embedder(await self.redis.hget(self.meta, "probe"), probe)

    async def reembed(self, embed_many: EmbedMany, probe: npt.NDArray[np.float32]) -> int:
        """Every hot story's vector made again from its text, then the embedder's fingerprint stored (only
        then: a restart half-way starts over). Stories that expire meanwhile stay expired. The count."""
        keys = [k async for k in self.redis.scan_iter(match=PREFIX + "*", count=1000)]
        done = 0
        for start in range(0, len(keys), REEMBED_BATCH):
            chunk = keys[start : start + REEMBED_BATCH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hget(key, "text")
                texts = await pipe.execute()
            hot = [(k, _s(t)[:EMBED_CHARS]) for k, t in zip(chunk, texts, strict=True) if t]
            if not hot:
                continue
            vectors = await embed_many([t for _, t in hot])
            async with self.redis.pipeline(transaction=False) as pipe:
                for (key, _), vector in zip(hot, vectors, strict=True):
                    pipe.eval(_SET_IF_STILL_HOT, 1, key, np.asarray(vector, dtype=np.float32).tobytes())
                done += sum(1 for r in await pipe.execute() if r != -1)
        await self.redis.hset(self.meta, "probe", as_bytes(probe))
        return done

    async def done(self, story_id: str) -> bool:
        return bool(await self.redis.hexists(PREFIX + story_id, "done"))

    async def put(self, record: dict[str, Any], embedding: npt.NDArray[np.float32] | None) -> None:
        """Hot copy first, then the day's JSONL file (a retry after a crash may append twice: readers keep
        the last line per story_id)."""
        key = PREFIX + record["story_id"]
        fields: dict[str, Any] = {
            "author": record["author"].lower(),
            "platform": record["platform"],
            "assets": ",".join(record["assets"]),
            "materiality": record["materiality"],
            "event_type": record["event_type"],
            "published_ms": record["published_ms"],
            "text": record["text"],
            "record": json.dumps(record, separators=(",", ":"), default=str),
        }
        if embedding is not None and embedding.shape == (self.dim,):
            fields["embedding"] = embedding.astype(np.float32).tobytes()
        elif embedding is not None:
            log.error(
                "embedding of dimension %s, index expects %d: stored without", embedding.shape, self.dim
            )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self.hot_ttl_s)
            await pipe.execute()
        day = datetime.fromtimestamp(record["analysed_ms"] / 1000, UTC).strftime("%Y-%m-%d")
        line = json.dumps(record, separators=(",", ":"), default=str, ensure_ascii=False) + "\n"
        async with self._write:
            await asyncio.to_thread(_append, self.directory / f"{day}.jsonl", line)

    async def mark_done(self, story_id: str, signal_id: str) -> None:
        await self.redis.hset(PREFIX + story_id, mapping={"done": "1", "signal_id": signal_id})

    async def record(self, story_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(PREFIX + story_id, "record")
        return json.loads(raw) if raw else None

    async def authors(self) -> set[str]:
        values = await self.redis.execute_command("FT.TAGVALS", self.index, "author")
        return {v.decode() if isinstance(v, bytes) else str(v) for v in values}

    async def search(
        self,
        since_ms: int,
        until_ms: int,
        authors: Sequence[str] = (),
        assets: Sequence[str] = (),
        vector: npt.NDArray[np.float32] | None = None,
        limit: int = 20,
    ) -> list[StoredStory]:
        """Stories of the window, by author and asset when given; nearest to `vector` first, else newest."""
        query = f"@published_ms:[{since_ms} {until_ms}]"
        if authors:
            query += " @author:{" + "|".join(tag(a.lower()) for a in authors) + "}"
        if assets:
            query += " @assets:{" + "|".join(tag(a) for a in assets) + "}"
        fields = ["author", "published_ms", "text", "materiality", "event_type", "assets"]
        args: list[Any]
        if vector is not None and vector.shape == (self.dim,):
            args = [
                f"({query})=>[KNN {limit} @embedding $vec AS dist]", "PARAMS", "2", "vec",
                vector.astype(np.float32).tobytes(), "SORTBY", "dist", "ASC", "RETURN", str(len(fields) + 1),
                *fields, "dist",
            ]  # fmt: skip
        else:
            args = [query, "SORTBY", "published_ms", "DESC", "RETURN", str(len(fields)), *fields]
        reply = await self.redis.execute_command(
            "FT.SEARCH", self.index, *args, "LIMIT", "0", str(limit), "DIALECT", "2"
        )
        out = []
        for key, doc in _search_rows(reply):
            out.append(
                StoredStory(
                    story_id=key.removeprefix(PREFIX),
                    author=doc.get("author", ""),
                    published_ms=int(float(doc.get("published_ms", 0))),
                    text=doc.get("text", ""),
                    materiality=doc.get("materiality", ""),
                    event_type=doc.get("event_type", ""),
                    assets=tuple(a for a in doc.get("assets", "").split(",") if a),
                    similarity=1 - float(doc["dist"]) if "dist" in doc else None,
                )
            )
        return out


def _search_rows(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """FT.SEARCH rows as (key, fields), from a RESP3 map or a RESP2 array."""
    if isinstance(reply, dict):
        results = reply.get(b"results") or reply.get("results") or []
        rows = []
        for r in results:
            attrs = r.get(b"extra_attributes", r.get("extra_attributes", {}))
            rows.append((_s(r.get(b"id", r.get("id", b""))), {_s(k): _s(v) for k, v in attrs.items()}))
        return rows
    return [
        (_s(key), {_s(k): _s(v) for k, v in zip(raw[::2], raw[1::2], strict=True)})
        for key, raw in zip(reply[1::2], reply[2::2], strict=True)
    ]


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line)


def _s(v: bytes | str) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
