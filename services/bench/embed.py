"""Embedder throughput: texts/s at batch 1 and 32, served (gRPC through the CPU Triton server) and bare.

The bare reference is the same encoder (same folder, same code) called in this process without a server. Bare
and served take turns for --rounds rounds while the other side idles, and each figure is its best round, which
keeps other load on a shared machine out of the comparison. Texts are real headlines.
`b1_concurrent32_texts_per_s` sends one text per request, 32 at a time: Triton's dynamic batcher groups them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from services.bench.machine import machine
from services.ingest.sources.csv_replay import default_replay_csv
from services.model_client import ModelClient
from services.model_server.embedder import Encoder
from services.model_server.process import ModelServerProcess


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--texts", type=int, default=256, help="headlines per measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare and served alternate; the best round counts"
    )
    parser.add_argument("--url", help="measure a running model server (host:port) instead of starting one")


def headlines(n: int) -> list[str]:
    with default_replay_csv().open(newline="", encoding="utf-8") as f:
        titles = [row["title"].strip() for row in csv.DictReader(f) if row.get("title", "").strip()]
    return [titles[i % len(titles)] for i in range(n)]


def rate(texts: int, seconds: float) -> float:
    return round(texts / seconds, 1)


def bare(encoder: Encoder, texts: list[str]) -> dict[str, float]:
    out = {}
    for size in (1, 32):
        started = time.perf_counter()
        for i in range(0, len(texts), size):
            encoder.encode(texts[i : i + size])
        out[f"b{size}_texts_per_s"] = rate(len(texts), time.perf_counter() - started)
    return out


async def served(client: ModelClient, texts: list[str]) -> dict[str, float]:
    async def timed(run: Callable[[], Awaitable[object]]) -> float:
        started = time.perf_counter()
        await run()
        return rate(len(texts), time.perf_counter() - started)

    async def one_by_one() -> None:
        for text in texts:
            await client.embed([text])

    async def concurrent() -> None:
        for i in range(0, len(texts), 32):
            await asyncio.gather(*(client.embed([t]) for t in texts[i : i + 32]))

    return {
        "b1_texts_per_s": await timed(one_by_one),
        "b32_texts_per_s": await timed(lambda: client.embed(texts)),
        "b1_concurrent32_texts_per_s": await timed(concurrent),
    }


async def measure(url: str, texts: list[str], rounds: int) -> dict[str, Any]:
    encoder = Encoder()
    encoder.encode(texts[:32])  # warm-up
    best: dict[str, dict[str, float]] = {"bare": {}, "served": {}}
    async with ModelClient(url, deadline_s=120, embed_batch=32) as client:
        await client.embed(texts[:32])
        for _ in range(rounds):  # the server idles while bare runs, and the other way round
            for side, figures in (("bare", bare(encoder, texts)), ("served", await served(client, texts))):
                for key, value in figures.items():
                    best[side][key] = max(value, best[side].get(key, 0.0))
    return {"model": encoder.name, "dim": encoder.dim, **best}


def run(args: argparse.Namespace) -> dict[str, Any]:
    texts = headlines(args.texts)
    result: dict[str, Any] = {
        "bench": "embed",
        "machine": machine(),
        "texts": len(texts),
        "rounds": args.rounds,
    }
    if args.url:
        result.update(asyncio.run(measure(args.url, texts, args.rounds)))
    else:
        with tempfile.TemporaryDirectory() as tmp, ModelServerProcess(Path(tmp)) as server:
            result.update(asyncio.run(measure(server.grpc_url, texts, args.rounds)))
    for size in (1, 32):
        key = f"b{size}_texts_per_s"
        result[f"served_vs_bare_b{size}"] = round(result["served"][key] / result["bare"][key], 3)
    return result
