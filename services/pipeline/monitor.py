"""What the live view of `tapewatch run` shows: per-stage counts, consumer lag, hop latencies, LLM calls
saved and model-server queue time, read from Redis streams and the services' own APIs."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import grpc
import redis.asyncio as aioredis
from rich.table import Table

from services.analysis.service import LLM_USAGE_KEY
from services.bench.machine import percentile
from services.model_client import ModelClient
from tapewatch.approval.v1 import approval_pb2
from tapewatch.dedup.v1 import dedup_pb2, dedup_pb2_grpc
from tapewatch.news.v1 import news_pb2

# (stream, consumer group reading it, stage that writes it)
STAGES = (
    ("news.raw", "dedup", "ingest"),
    ("news.unique", "analysis", "dedup"),
    ("signals.pending", "approval", "analysis"),
    ("signals.approved", "quoting", "approval"),
)


@dataclass
class Hop:
    """Latency from one stream to the next, matched on the message key."""

    seen_ms: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


class PipelineMonitor:
    def __init__(self, redis: aioredis.Redis, dedup_addr: str, model_server_addr: str) -> None:
        self.redis = redis
        self.dedup = dedup_pb2_grpc.DedupServiceStub(grpc.aio.insecure_channel(dedup_addr))
        self.models = ModelClient(model_server_addr, deadline_s=2, retries=0)
        self.cursor = dict.fromkeys((s for s, _, _ in STAGES), "0-0")
        self.raw_ms: dict[str, int] = {}  # item id -> news.raw time
        self.story_ms: dict[str, int] = {}  # story id -> news.unique time
        self.dedup_hop: list[float] = []
        self.analysis_hop: list[float] = []

    async def _follow(self) -> None:
        """Read what is new on each stream and match keys across hops."""
        for stream, _, _ in STAGES[:3]:
            entries = await self.redis.xrange(stream, min=f"({self.cursor[stream]}", count=5000)
            for entry_id, fields in entries:
                eid = entry_id.decode()
                self.cursor[stream] = eid
                ms = int(eid.split("-")[0])
                data = fields.get(b"data", b"")
                if stream == "news.raw":
                    self.raw_ms[fields.get(b"key", b"").decode()] = ms
                elif stream == "news.unique":
                    story = news_pb2.Story.FromString(data)
                    self.story_ms[story.id] = ms
                    if (t := self.raw_ms.get(story.first_item.id)) is not None:
                        self.dedup_hop.append(ms - t)
                else:
                    signal = approval_pb2.Signal.FromString(data)
                    if (t := self.story_ms.get(signal.story_id)) is not None:
                        self.analysis_hop.append(ms - t)

    async def table(self) -> Table:
        with contextlib.suppress(Exception):
            await self._follow()
        table = Table(title="Tapewatch pipeline", expand=False)
        for col in ("stream", "written by", "length", "read by", "lag", "pending"):
            table.add_column(col, justify="right" if col in ("length", "lag", "pending") else "left")
        for stream, group, writer in STAGES:
            length = await self.redis.xlen(stream)
            lag = pending = "-"
            with contextlib.suppress(Exception):
                for g in await self.redis.xinfo_groups(stream):
                    if g["name"].decode() == group:
                        lag, pending = str(g.get("lag") or 0), str(g["pending"])
            table.add_row(stream, writer, str(length), group, lag, pending)
        table.caption = "  ".join(
            [
                self._hop("ingest->story", self.dedup_hop),
                self._hop("story->signal", self.analysis_hop),
                await self._saved(),
                await self._llm(),
            ]
        )
        return table

    @staticmethod
    def _hop(name: str, values: list[float]) -> str:
        if not values:
            return f"{name} -"
        recent = values[-500:]
        return f"{name} p50 {percentile(recent, 50):.0f} ms p99 {percentile(recent, 99):.0f} ms"

    async def _saved(self) -> str:
        try:
            stats = await self.dedup.Stats(dedup_pb2.StatsRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return "LLM calls saved -"
        return f"stories {stats.stories}  LLM calls saved {stats.llm_calls_saved}"

    async def _llm(self) -> str:
        usage = await self.redis.hgetall(LLM_USAGE_KEY)  # recorded by the analysis service
        tokens, seconds = int(usage.get(b"tokens", 0)), float(usage.get(b"seconds", 0.0))
        rate = f"{tokens / seconds:.1f} tok/s" if seconds > 0 else "- tok/s"
        try:
            reading = await self.models.queue_reading("llm")
        except Exception:
            return f"llm {rate}"
        mean_ms = reading.queue_s / reading.requests * 1000 if reading.requests else 0.0
        return f"llm {rate}, requests {reading.requests}, mean queue {mean_ms:.0f} ms"

    async def close(self) -> None:
        await self.models.close()
