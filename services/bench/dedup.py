"""Dedup speed with a full window: per-decision latency with and without embedding, batched throughput,
search alone, memory per story.

Starts a Redis Stack and the CPU model server (or uses --model-server), fills the window with --stories
stories, then measures on real news items (the crypto news CSV, title and summary):

- `without_embedding`: search + rule + atomic claim or echo for an item whose vector is known
  (Deduplicator.place), one at a time, by verdict;
- `with_embedding`: the same plus the embedder call at batch 1 (Deduplicator.process);
- `batched`: items pushed on `news.raw` and drained by one StreamConsumer (64 in flight, embeddings
  batched by EmbedBatcher), as the service runs: `items_per_s`;
- `search`: the window KNN alone (FT.SEARCH with the first_seen filter, k neighbours);
- `memory_per_story_bytes`: Redis INFO used_memory before and after the fill, over --stories.

The window holds real headline vectors first, then, to reach --stories, each real vector plus Gaussian
noise (cosine about 0.6 to its source), with first_seen spread over the last 23 hours. The fill writes the
same keys as a new story does (story hash with vector and text, sources, platforms, item key), in
pipelines rather than one script call each, to keep set-up short; news.unique is not filled.
Queries: half are re-posts of stored headlines (duplicates), half are held-out headlines (mostly new).
References measured in the same run: `bare_knn` (FT.SEARCH without filter, no parsing) and
`bare_embed` (ModelClient.embed at batch 1 and 64, no dedup).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from services.bench.machine import machine, percentile
from services.dedup.embedding import EmbedBatcher
from services.dedup.rule import Thresholds
from services.dedup.service import Deduplicator
from services.dedup.store import StoryStore, reply_field, story_id_for
from services.dedup.text import for_embedding
from services.ingest.normalize import InvalidItem, validate
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource, default_replay_csv
from services.model_client import ModelClient
from services.model_server.process import ModelServerProcess
from services.runtime.redis_server import RedisStack
from services.runtime.streams import StreamConsumer, publish
from tapewatch.news.v1 import news_pb2

K = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stories", type=int, default=100_000, help="stories in the window")
    parser.add_argument("--real", type=int, default=3000, help="real headlines among them")
    parser.add_argument("--queries", type=int, default=1000, help="timed decisions per measurement")
    parser.add_argument("--batched-items", type=int, default=2000, help="items drained through the stream")
    parser.add_argument("--ef-runtime", type=int, default=20, help="HNSW EF_RUNTIME of the index")
    parser.add_argument("--model-server", help="HOST:PORT of a running model server (default: start one)")


def _items(n: int) -> list[news_pb2.NewsItem]:
    now = datetime.now(UTC)
    out = []
    for raw in CsvReplaySource(CsvReplayConfig(path=default_replay_csv())).load():
        try:
            item = validate(raw, now)
        except InvalidItem:
            continue
        if for_embedding(item.text):
            out.append(item)
        if len(out) == n:
            break
    return out


def _fresh(item: news_pb2.NewsItem, tag: str, text: str | None = None) -> news_pb2.NewsItem:
    copy = news_pb2.NewsItem()
    copy.CopyFrom(item)
    copy.id = f"nw_bench_{tag}"
    copy.source = "bench-x"
    copy.platform = news_pb2.PLATFORM_X
    if text is not None:
        copy.text = text
    copy.published_at.FromDatetime(datetime.now(UTC))
    return copy


async def _embed_all(client: ModelClient, texts: list[str]) -> tuple[npt.NDArray[np.float32], float]:
    started = time.perf_counter()
    vecs = await client.embed(texts)
    return vecs, len(texts) / (time.perf_counter() - started)


async def _fill(
    store: StoryStore, real: list[news_pb2.NewsItem], vecs: npt.NDArray[np.float32], n: int
) -> None:
    rng = np.random.default_rng(7)
    now_ms = int(time.time() * 1000)
    span_ms = 23 * 3600 * 1000
    redis = store.redis
    for start in range(0, n, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                base = real[i % len(real)]
                if i < len(real):
                    vec, text, item_id = vecs[i], base.text, base.id
                else:
                    noisy = vecs[i % len(real)] + rng.normal(0, 0.065, vecs.shape[1]).astype(np.float32)
                    vec, text, item_id = noisy / np.linalg.norm(noisy), f"archived story {i}", f"nw_fill_{i}"
                sid = story_id_for(item_id)
                seen = now_ms - span_ms + (i * span_ms) // n
                first = news_pb2.NewsItem(id=item_id, source=base.source, platform=base.platform, text=text)
                pipe.hset(
                    store.story_key(sid),
                    mapping={
                        "vec": np.asarray(vec, dtype=np.float32).tobytes(),
                        "first_seen": seen, "last_seen": seen, "echo_count": 0,
                        "text": text, "first_item": first.SerializeToString(),
                    },
                )  # fmt: skip
                pipe.hincrby(f"{store.prefix}sources:{sid}", base.source, 1)
                pipe.hincrby(f"{store.prefix}platforms:{sid}", str(int(base.platform)), 1)
                pipe.set(store.item_key(item_id), sid, ex=store.item_ttl_s)
            await pipe.execute()
    await redis.set(store.tape_key, now_ms)


async def _indexed(redis: aioredis.Redis, index: str, n: int) -> None:
    while True:
        info = await redis.execute_command("FT.INFO", index)
        doc = info if isinstance(info, dict) else dict(zip(info[::2], info[1::2], strict=False))
        docs = int(reply_field(doc, "num_docs", 0))
        indexing = float(reply_field(doc, "indexing", 0))
        if docs >= n and not indexing:
            return
        await asyncio.sleep(0.5)


async def _used_memory(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    every = [ms for values in samples.values() for ms in values]
    for name, values in [("all", every), *sorted(samples.items())]:
        out[name] = {
            "n": len(values),
            "p50_ms": round(percentile(values, 50), 3),
            "p99_ms": round(percentile(values, 99), 3),
        }
    return out


def _verdict(outcome: Any) -> str:
    return outcome.decision.rule_name if outcome.decision else "seen"


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tw-bench-dedup-") as tmp:
        server = None
        if not args.model_server:
            server = ModelServerProcess(Path(tmp) / "model-server", {"TAPEWATCH_CONFIG": ""}).start()
        url = args.model_server or server.grpc_url  # type: ignore[union-attr]
        redis_server = RedisStack(Path(tmp) / "redis").start()
        redis = aioredis.Redis.from_url(redis_server.url)
        client = ModelClient(url, deadline_s=120, embed_batch=64)
        try:
            return await _measure(args, redis, client)
        finally:
            await client.close()
            await redis.aclose()
            redis_server.stop()
            if server:
                server.stop()


async def _measure(args: argparse.Namespace, redis: aioredis.Redis, client: ModelClient) -> dict[str, Any]:
    q = args.queries
    items = _items(args.real + 3 * q)
    real, held_out = items[: args.real], items[args.real :]
    texts = [for_embedding(i.text) for i in items]
    vecs, embed_batched_per_s = await _embed_all(client, texts)
    real_vecs = vecs[: args.real]
    dim = int(vecs.shape[1])

    store = StoryStore(redis, echoes_kept=20, hnsw=(16, 200, args.ef_runtime))
    await store.ensure_index(dim)
    memory_before = await _used_memory(redis)
    fill_started = time.perf_counter()
    await _fill(store, real, real_vecs, args.stories)
    await _indexed(redis, store.index, args.stories)
    fill_s = time.perf_counter() - fill_started
    memory_after = await _used_memory(redis)

    rng = np.random.default_rng(11)
    picks = rng.choice(args.real, size=3 * q, replace=True)

    def queries(round_: int) -> list[tuple[news_pb2.NewsItem, str]]:
        """q items: re-posts of stored headlines and held-out headlines, alternating."""
        out = []
        for j in range(q):
            n = round_ * q + j
            if j % 2 == 0:
                text = f"🚨 BREAKING: {real[picks[n]].text} 🚀"
                out.append((_fresh(real[picks[n]], f"{round_}_{j}", text), for_embedding(text)))
            else:
                src = held_out[(round_ * q + j) % len(held_out)]
                out.append((_fresh(src, f"{round_}_{j}"), for_embedding(src.text)))
        return out

    async def embed_one(text: str) -> npt.NDArray[np.float32]:
        return (await client.embed([text]))[0]

    dedup = Deduplicator(store, embed_one, Thresholds(), 24 * 3600, K)
    gc.collect()
    gc.freeze()

    # Search alone, and the bare reference (no filter, no parsing).
    query_vecs = await client.embed([t for _, t in queries(0)])
    search_ms, bare_ms = [], []
    since = int(time.time() * 1000) - 24 * 3600 * 1000
    blob_query = [v.astype(np.float32).tobytes() for v in query_vecs]
    for vec, blob in zip(query_vecs, blob_query, strict=True):
        t0 = time.perf_counter()
        await store.search(vec, since, K)
        search_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await redis.execute_command(
            "FT.SEARCH", store.index, f"*=>[KNN {K} @vec $v AS d]", "PARAMS", "2", "v", blob,
            "RETURN", "1", "d", "DIALECT", "2",
        )  # fmt: skip
        bare_ms.append((time.perf_counter() - t0) * 1000)

    # One decision at a time, vector known.
    without: dict[str, list[float]] = defaultdict(list)
    for (item, _), vec in zip(queries(0), query_vecs, strict=True):
        t0 = time.perf_counter()
        outcome = await dedup.place(item, vec)
        without[_verdict(outcome)].append((time.perf_counter() - t0) * 1000)

    # One decision at a time, embedding included (batch 1), and the bare embedding reference.
    with_embed: dict[str, list[float]] = defaultdict(list)
    bare_embed_ms = []
    for item, text in queries(1):
        t0 = time.perf_counter()
        outcome = await dedup.process(item)
        with_embed[_verdict(outcome)].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await client.embed([text])
        bare_embed_ms.append((time.perf_counter() - t0) * 1000)

    # Batched: through news.raw and one consumer, as the service runs.
    batcher = EmbedBatcher(client.embed, 64)
    batched_dedup = Deduplicator(store, batcher.embed, Thresholds(), 24 * 3600, K)
    batch_items = [item for r in (2,) for item, _ in queries(r)]
    batch_items = (batch_items * (args.batched_items // len(batch_items) + 1))[: args.batched_items]
    for n, item in enumerate(batch_items):
        item.id = f"nw_bench_batched_{n}"
        await publish(redis, "news.raw", item.SerializeToString(), item.id)
    consumer = StreamConsumer(
        redis, "news.raw", "dedup", "bench", batched_dedup.handle, batch=64, concurrency=64
    )
    await consumer.ensure_group()
    started = time.perf_counter()
    while consumer.stats["acked"] + consumer.stats["dead"] < len(batch_items):
        await consumer.read_new()
    batched_s = time.perf_counter() - started
    await batcher.close()
    gc.unfreeze()

    search = {"p50_ms": round(percentile(search_ms, 50), 3), "p99_ms": round(percentile(search_ms, 99), 3)}
    bare_knn_p99 = percentile(bare_ms, 99)
    items_per_s = len(batch_items) / batched_s
    stats = await store.stats()
    return {
        "bench": "dedup",
        "stories_in_window": args.stories,
        "dim": dim,
        "hnsw": {"m": 16, "ef_construction": 200, "ef_runtime": args.ef_runtime, "k": K},
        "without_embedding": _summary(without),
        "with_embedding": _summary(with_embed),
        "p50_ms": round(percentile([v for vs in with_embed.values() for v in vs], 50), 3),
        "p99_ms": round(percentile([v for vs in with_embed.values() for v in vs], 99), 3),
        "items_per_s": round(items_per_s, 1),
        "batched": {
            "items": len(batch_items),
            "seconds": round(batched_s, 2),
            "embed_calls": batcher.calls,
            "mean_batch": round(batcher.texts / max(batcher.calls, 1), 1),
            "dead_lettered": consumer.stats["dead"],
        },
        "search": search,
        "memory_per_story_bytes": round((memory_after - memory_before) / args.stories),
        "memory_used_bytes": {"before": memory_before, "after": memory_after},
        "fill_s": round(fill_s, 1),
        "reference": {
            "bare_knn_p99_ms": round(bare_knn_p99, 3),
            "bare_embed_b1_p50_ms": round(percentile(bare_embed_ms, 50), 3),
            "bare_embed_b1_p99_ms": round(percentile(bare_embed_ms, 99), 3),
            "bare_embed_b64_items_per_s": round(embed_batched_per_s, 1),
        },
        "vs_bare_knn_p99": round(search["p99_ms"] / bare_knn_p99, 3) if bare_knn_p99 else None,
        "vs_bare_embed_b64": round(items_per_s / embed_batched_per_s, 3),
        "decisions": {k: v for k, v in sorted(stats.items())},
        "targets": {
            "p99_ms": "< 50 per item with embedding at batch 1",
            "items_per_s": ">= 200",
            "search_p99_ms": "< 3",
        },
        "machine": machine(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_bench(args))
