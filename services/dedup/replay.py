"""Savings: replay a news CSV (default: the crypto news of 2021-2022, which holds natural cross-outlet
copies) through the dedup decision path and count items in, stories out and LLM calls saved.

Each item goes through ingest's validation, then exactly the service's path (text preparation, window
search, rule, atomic claim or echo) into a throw-away Redis Stack, in published order with its own
published time, so the 24 h window is the news's own day. Only the transport differs: no streams, and
embeddings are computed here in batches with the model server's loading code (or through a running
model server with --server).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

from services.dedup.rule import Thresholds
from services.dedup.service import Deduplicator
from services.dedup.store import StoryStore
from services.dedup.text import for_embedding
from services.evals.dedup import embed_local, embed_server
from services.ingest.normalize import InvalidItem, validate
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource, default_replay_csv
from services.runtime.redis_server import RedisStack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv", type=Path, help="news CSV (default: the shared crypto news, else the sample)"
    )
    parser.add_argument("--limit", type=int, default=0, help="first N items in published order (0: all)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="embedder folder (default: the served one)")
    source.add_argument("--server", help="embed through a running model server at HOST:PORT")
    parser.add_argument("--window-s", type=int, default=24 * 3600)
    parser.add_argument("--duplicate-threshold", type=float, default=0.75)
    parser.add_argument("--new-threshold", type=float, default=0.50)
    parser.add_argument("--min-anchors", type=int, default=2)
    parser.add_argument("--examples", type=int, default=8, help="show this many of the most echoed stories")


async def _replay(
    args: argparse.Namespace, items: list[Any], vectors: dict[str, npt.NDArray[np.float32]]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tw-dedup-replay-") as tmp:
        with RedisStack(Path(tmp) / "redis", appendonly=False) as server:
            redis = aioredis.Redis.from_url(server.url)
            try:
                store = StoryStore(redis, echoes_kept=5)
                await store.ensure_index(len(next(iter(vectors.values()))))

                async def embed(text: str) -> npt.NDArray[np.float32]:
                    return vectors[text]

                thresholds = Thresholds(args.duplicate_threshold, args.new_threshold, args.min_anchors)
                dedup = Deduplicator(store, embed, thresholds, args.window_s)
                started = time.perf_counter()
                story_of: dict[str, str] = {}
                for item in items:
                    outcome = await dedup.process(item)
                    story_of[item.id] = outcome.story_id
                elapsed = time.perf_counter() - started
                stats = await store.stats()
                by_story: dict[str, list[Any]] = {}
                for item in items:
                    by_story.setdefault(story_of[item.id], []).append(item)
                echoed = sorted(by_story.items(), key=lambda kv: -len(kv[1]))[: args.examples]
                examples = []
                for story_id, members in echoed:
                    if len(members) < 2:
                        break
                    story = await store.get_story(story_id)
                    assert story is not None
                    examples.append(
                        {
                            "story_id": story_id,
                            "echo_count": story.echo_count,
                            "sources": list(story.sources),
                            "first": members[0].text[:140],
                            "echoes": [m.text[:140] for m in members[1:4]],
                        }
                    )
            finally:
                await redis.aclose()
    return {"stats": stats, "placing_s": elapsed, "examples": examples}


def run(args: argparse.Namespace) -> dict[str, Any]:
    path = args.csv or default_replay_csv()
    now = datetime.now(UTC)
    items, invalid = [], 0
    for raw in CsvReplaySource(CsvReplayConfig(path=path, limit=args.limit or None)).load():
        try:
            item = validate(raw, now)
        except InvalidItem:
            invalid += 1
            continue
        if for_embedding(item.text):
            items.append(item)
        else:
            invalid += 1
    items.sort(key=lambda i: (i.published_at.seconds, i.published_at.nanos))
    texts = sorted({for_embedding(i.text) for i in items})
    started = time.perf_counter()
    vectors, model = embed_server(texts, args.server) if args.server else embed_local(texts, args.model)
    embed_s = time.perf_counter() - started
    result = asyncio.run(_replay(args, items, vectors))
    stats = result["stats"]
    items_in = stats.get("items_in", 0)
    stories = stats.get("stories", 0)
    duplicates = stats.get("duplicates", 0)
    return {
        "eval": "dedup-replay",
        "file": str(path),
        "model": model,
        "items_in": items_in,
        "stories_out": stories,
        "llm_calls_saved": duplicates,
        "saved_fraction": round(duplicates / items_in, 4) if items_in else 0.0,
        "ambiguous_settled": stats.get("ambiguous_duplicate", 0) + stats.get("ambiguous_new", 0),
        "ambiguous_called_duplicate": stats.get("ambiguous_duplicate", 0),
        "contradicted_above_threshold": stats.get("contradicted", 0),
        "skipped_invalid": invalid,
        "window_s": args.window_s,
        "thresholds": {
            "duplicate": args.duplicate_threshold,
            "new": args.new_threshold,
            "min_anchors": args.min_anchors,
        },
        "embed_s": round(embed_s, 1),
        "placing_s": round(result["placing_s"], 1),
        "most_echoed": result["examples"],
    }
