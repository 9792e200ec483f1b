"""Per-story analysis latency on this CPU with the default model.

Starts a Redis Stack and the CPU model server as child processes (or uses --model-server), runs the
analysis service in this process, then measures on real headlines (the crypto news replay file):
(1) Analyze over gRPC, one story at a time: judgement (model or rules), market state, policy;
(2) the pipeline: --pipeline-stories stories published to news.unique at once, each timed from publish
    to fully handled (judged, embedded, archived, signal and alerts out), queueing included;
(3) the reference: the bare model call with the same prompt and schema (ModelClient.generate),
    interleaved with (1), so `vs_bare_model` says what the service adds on top of the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from services.analysis.judgement import reply_schema
from services.analysis.prompt import load_prompt
from services.analysis.service import running
from services.analysis.settings import AnalysisSettings
from services.bench.machine import machine, percentile
from services.ingest.sources.csv_replay import CsvReplayConfig, CsvReplaySource, default_replay_csv
from services.model_client import ModelClient
from services.runtime.interceptors import insecure_channel
from services.runtime.redis_server import RedisStack, free_port
from services.runtime.streams import publish
from tapewatch.analysis.v1 import analysis_pb2, analysis_pb2_grpc
from tapewatch.news.v1 import news_pb2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stories", type=int, default=40, help="stories through Analyze, one at a time")
    parser.add_argument("--pipeline-stories", type=int, default=20, help="stories through news.unique")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--model-server", help="host:port of a running model server (default: start one)")


def headlines(n: int) -> list[news_pb2.NewsItem]:
    items = CsvReplaySource(CsvReplayConfig(path=default_replay_csv(), limit=max(n, 1) * 3)).load()
    return [i for i in items if i.text.strip()][:n]


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "mean_ms": round(statistics.mean(values), 1),
    }


async def _bench(args: argparse.Namespace, model_url: str, tmp: Path) -> dict[str, Any]:
    items = headlines(args.warmup + args.stories + args.pipeline_stories)
    warm, timed, piped = (
        items[: args.warmup],
        items[args.warmup : args.warmup + args.stories],
        items[args.warmup + args.stories :],
    )
    redis_server = RedisStack(tmp / "redis").start()
    settings = AnalysisSettings.load(
        model_server_addr=model_url,
        analysis_addr=f"127.0.0.1:{free_port()}",
        data_dir=tmp,
        consumer_name="bench",
    )
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with (
            ModelClient(model_url, deadline_s=settings.model_deadline_s, retries=1) as model,
            aiohttp.ClientSession() as session,
            running(settings, redis, model, session) as app,
        ):
            channel = insecure_channel(f"127.0.0.1:{app.port}", "bench")
            stub = analysis_pb2_grpc.AnalysisServiceStub(channel)
            for item in warm:
                await stub.Analyze(analysis_pb2.AnalyzeRequest(item=item), timeout=120)
            prompt = load_prompt(settings.prompt_version)

            async def bare_call(item: news_pb2.NewsItem) -> float:
                view = app.analyst.story_view(item, 0)
                started = time.perf_counter()
                await model.generate(
                    prompt.render(view), settings.max_tokens, json_schema=reply_schema(view.assets)
                )
                return (time.perf_counter() - started) * 1000

            async def analyze_call(item: news_pb2.NewsItem) -> float:
                started = time.perf_counter()
                reply = await stub.Analyze(analysis_pb2.AnalyzeRequest(item=item), timeout=120)
                judged[analysis_pb2.JudgedBy.Name(reply.impact.judged_by)] += 1
                return (time.perf_counter() - started) * 1000

            # Interleaved, order alternating: the second call of a pair finds the story's prefix cached, and
            # the machine's load drifts the same way for both.
            latencies, bare, model_ms, judged = [], [], [], Counter[str]()
            for i, item in enumerate(timed):
                if i % 2:
                    bare.append(await bare_call(item))
                    latencies.append(await analyze_call(item))
                else:
                    latencies.append(await analyze_call(item))
                    bare.append(await bare_call(item))
            await channel.close()

            published: dict[str, float] = {}
            for i, item in enumerate(piped):
                story = news_pb2.Story(id=f"st_bench{i}", first_item=item)
                published[story.id] = time.perf_counter()
                await publish(redis, settings.news_stream, story.SerializeToString(), story.id)
            done: dict[str, float] = {}
            deadline = time.monotonic() + 60 + 30 * len(published)
            while len(done) < len(published) and time.monotonic() < deadline:
                for sid in published.keys() - done.keys():
                    if await app.archive.done(sid):
                        done[sid] = time.perf_counter()
                await asyncio.sleep(0.02)
            pipeline = [(done[s] - published[s]) * 1000 for s in done]
            span_s = max(done.values(), default=time.perf_counter()) - min(published.values())
            for sid in published:
                record = await app.archive.record(sid)
                if record:
                    model_ms.append(record["timings_ms"]["model_ms"])

    finally:
        await redis.aclose()
        redis_server.stop()
    analyze = _ms(latencies)
    return {
        "bench": "analysis",
        "stories": len(latencies),
        **analyze,
        "judged_by": dict(judged),
        "pipeline": {
            "stories": len(pipeline),
            "not_done": len(published) - len(done),
            **_ms(pipeline),
            "stories_per_s": round(len(pipeline) / span_s, 2),
            "model_p50_ms": round(percentile(model_ms, 50), 1) if model_ms else None,
        },
        "reference": {"bare_model": _ms(bare)},
        "vs_bare_model": round(analyze["p50_ms"] / percentile(bare, 50), 3),
        "targets": {"p50_ms": "<= 2500 per story (Analyze)"},
        "model": settings.model_label,
        "prompt_version": load_prompt(settings.prompt_version).version,
        "machine": machine(),
    }


@contextlib.contextmanager
def _model_server(args: argparse.Namespace, tmp: Path) -> Iterator[str]:
    if args.model_server:
        yield args.model_server
        return
    from services.model_server.process import ModelServerProcess

    with ModelServerProcess(tmp / "model-server") as server:
        yield server.grpc_url


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="tw-bench-analysis-") as tmp,
        _model_server(args, Path(tmp)) as url,
    ):
        return asyncio.run(_bench(args, url, Path(tmp)))
