"""The dedup service: a consumer group on `news.raw` that turns the tape into stories, and DedupService
(Check, GetStory, Stats) on gRPC.

Per item: parse (a payload that is not a NewsItem is rejected), prepare the text for the embedder
(rejected when nothing is left), skip it if it was placed before (redelivery), embed (batched), search
the window, apply the rule (services/dedup/rule.py) to the nearest stories, then either attach an echo
to the story or create a new one and publish it to `news.unique`, atomically (services/dedup/store.py).
The message is acknowledged only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError
from opentelemetry import metrics, trace

from services.dedup.embedding import EmbedBatcher
from services.dedup.rule import Decision, Thresholds, decide
from services.dedup.settings import DedupSettings
from services.dedup.store import Neighbour, StoryStore, stats_fields
from services.dedup.text import for_embedding
from services.model_client import ModelClient, ModelError, ModelRejected
from services.model_client.fingerprint import PROBE_TEXT
from services.runtime.errors import InvalidArgument, NotFound
from services.runtime.logs import setup_logging
from services.runtime.redis_client import open_redis
from services.runtime.server import GrpcServer, Registration, wait_for_shutdown_signal
from services.runtime.streams import Message, Reject, StreamConsumer
from services.runtime.telemetry import setup_telemetry
from tapewatch.dedup.v1 import dedup_pb2, dedup_pb2_grpc
from tapewatch.news.v1 import news_pb2

log = logging.getLogger("tapewatch.dedup")
_meter = metrics.get_meter("tapewatch.dedup")
_decisions = _meter.create_counter(
    "tapewatch.dedup.decisions", description="items placed, by verdict and rule"
)
_claim_retries = _meter.create_counter(
    "tapewatch.dedup.claim_retries", description="new-story claims lost to a concurrent story: searched again"
)

Embed = Callable[[str], Awaitable[npt.NDArray[np.float32]]]
_NEW_STORY_STATS: dict[int, str] = {
    dedup_pb2.RULE_SECOND_LOOK_DIFFERS: "ambiguous_new",
    dedup_pb2.RULE_CONTRADICTED_ABOVE_THRESHOLD: "contradicted",
}
MAX_CLAIMS = 50


class EmptyText(ValueError):
    """Nothing is left of the text once links, emoji and alert words are gone."""

    def __init__(self) -> None:
        super().__init__("text is empty after normalisation (only links, emoji or alert words)")


class ClaimContention(RuntimeError):
    """Too many stories appeared while this item was being placed; the stream retries it later."""


@dataclass(frozen=True)
class Outcome:
    status: str  # created | attached | seen
    story_id: str
    decision: Decision | None  # None when the item had been placed before
    claims: int = 1


def seen_ms(item: news_pb2.NewsItem) -> int:
    """When the item appeared: published time, else received time, else now."""
    for ts in (item.published_at, item.received_at):
        if ts.seconds or ts.nanos:
            return int(ts.ToMilliseconds())
    return int(time.time() * 1000)


def parse_item(data: bytes) -> news_pb2.NewsItem:
    """The NewsItem in a message, or Reject with the reason."""
    try:
        item = news_pb2.NewsItem.FromString(data)
    except DecodeError as exc:
        raise Reject(f"payload is not a NewsItem ({exc})") from None
    if not item.id:
        raise Reject("payload is not a NewsItem with an id (empty or foreign bytes)")
    return item


class Deduplicator:
    """Places items into stories. Any number of these, in any number of processes, may share one Redis."""

    def __init__(
        self,
        store: StoryStore,
        embed: Embed,
        thresholds: Thresholds,
        window_s: int = 24 * 3600,
        neighbours: int = 4,
    ) -> None:
        self.store = store
        self.embed = embed
        self.thresholds = thresholds
        self.window_ms = window_s * 1000
        self.k = neighbours

    def judge(self, text: str, neighbours: list[Neighbour]) -> tuple[Decision, Neighbour | None]:
        """The rule against each neighbour, nearest first: the first that says duplicate wins; if none
        does, the verdict on the nearest (new)."""
        if not neighbours:
            return Decision(False, dedup_pb2.RULE_EMPTY_WINDOW, 0.0, "no story in the window"), None
        first: tuple[Decision, Neighbour] | None = None
        for n in neighbours:
            d = decide(n.similarity, text, n.text, self.thresholds)
            if d.duplicate:
                return d, n
            first = first or (d, n)
            if n.similarity <= self.thresholds.new:
                break  # the rest are further away
        assert first is not None
        return first

    async def check(self, text: str, at_ms: int) -> tuple[Decision, Neighbour | None]:
        prepared = for_embedding(text)
        if not prepared:
            raise EmptyText()
        vec = await self.embed(prepared)
        neighbours = await self.store.search(vec, at_ms - self.window_ms, self.k)
        return self.judge(text, neighbours)

    async def process(self, item: news_pb2.NewsItem) -> Outcome:
        """Place one item (idempotent on item.id); EmptyText when nothing is left of its text."""
        prepared = for_embedding(item.text)
        if not prepared:
            raise EmptyText()
        placed = await self.store.item_story(item.id)
        if placed is not None:
            return Outcome("seen", placed, None)
        vec = await self.embed(prepared)
        return await self.place(item, vec)

    async def place(self, item: news_pb2.NewsItem, vec: npt.NDArray[np.float32]) -> Outcome:
        """Place an item whose embedding is known: search, decide, claim; search again if a claim was lost."""
        at = seen_ms(item)
        for claims in range(1, MAX_CLAIMS + 1):
            seq, neighbours = await self.store.search_with_seq(vec, at - self.window_ms, self.k)
            decision, neighbour = self.judge(item.text, neighbours)
            if decision.duplicate and neighbour is not None:
                stat = "ambiguous_duplicate" if decision.rule == dedup_pb2.RULE_SECOND_LOOK_AGREES else ""
                claim = await self.store.attach(item, neighbour, at, stat)
                if claim.status == "gone":
                    continue  # the story expired between search and attach
            else:
                stat = _NEW_STORY_STATS.get(decision.rule, "")
                claim = await self.store.create(item, vec, at, seq, stat)
                if claim.status == "stale":
                    _claim_retries.add(1)
                    continue
            if claim.status != "seen":
                _decisions.add(
                    1, {"verdict": "duplicate" if decision.duplicate else "new", "rule": decision.rule_name}
                )
            span = trace.get_current_span()
            span.set_attribute("tapewatch.story_id", claim.story_id)
            span.set_attribute("tapewatch.dedup.rule", decision.rule_name)
            span.set_attribute("tapewatch.dedup.similarity", decision.similarity)
            return Outcome(claim.status, claim.story_id, decision if claim.status != "seen" else None, claims)
        raise ClaimContention(f"item {item.id}: {MAX_CLAIMS} claims lost to concurrent new stories")

    async def handle(self, message: Message) -> None:
        """The stream handler: bad input is rejected (dead-lettered with the reason), not retried."""
        try:
            await self.process(parse_item(message.data))
        except (Reject, EmptyText, ModelRejected) as exc:
            await self.store.count("rejected")
            raise Reject(str(exc)) from None

    async def sweep(self) -> int:
        """Drop stories that left the window (measured on the tape's clock) from the index."""
        tape = await self.store.tape_ms()
        return await self.store.sweep(tape - self.window_ms) if tape else 0


class DedupServicer(dedup_pb2_grpc.DedupServiceServicer):
    def __init__(self, dedup: Deduplicator, window_s: int) -> None:
        self.dedup = dedup
        self.window_s = window_s

    async def Check(
        self, request: dedup_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> dedup_pb2.CheckResponse:
        at = (
            int(request.published_at.ToMilliseconds())
            if request.HasField("published_at")
            else int(time.time() * 1000)
        )
        try:
            decision, neighbour = await self.dedup.check(request.text, at)
        except EmptyText as exc:
            raise InvalidArgument(str(exc)) from None
        return dedup_pb2.CheckResponse(
            verdict=decision.verdict,  # type: ignore[arg-type]
            similarity=decision.similarity,
            neighbour_story_id=neighbour.story_id if neighbour else "",
            neighbour_text=neighbour.text if neighbour else "",
            rule=decision.rule,  # type: ignore[arg-type]
            explanation=decision.explanation,
        )

    async def GetStory(
        self, request: dedup_pb2.GetStoryRequest, context: grpc.aio.ServicerContext
    ) -> news_pb2.Story:
        if not request.story_id:
            raise InvalidArgument("story_id is required")
        story = await self.dedup.store.get_story(request.story_id)
        if story is None:
            raise NotFound(f"no story {request.story_id!r} (never seen, or expired after leaving the window)")
        return story

    async def Stats(
        self, request: dedup_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> dedup_pb2.StatsResponse:
        store = self.dedup.store
        tape = await store.tape_ms() or int(time.time() * 1000)
        return dedup_pb2.StatsResponse(
            **stats_fields(await store.stats()),
            window_seconds=self.window_s,
            stories_in_window=await store.stories_since(tape - self.window_s * 1000),
        )


async def wait_for_embedder(client: ModelClient, stop: asyncio.Event) -> npt.NDArray[np.float32] | None:
    """The embedder's vector for PROBE_TEXT (its size and fingerprint); None if stopped before it answered."""
    delay = 0.5
    while not stop.is_set():
        try:
            return (await client.embed([PROBE_TEXT]))[0]
        except ModelError as exc:
            log.warning("embedder not ready (%s); retrying in %.1fs", exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 5.0)
    return None


def make_store(redis: object, settings: DedupSettings) -> StoryStore:
    return StoryStore(
        redis,  # type: ignore[arg-type]
        prefix=settings.key_prefix,
        unique_stream=settings.unique_stream,
        unique_maxlen=settings.unique_maxlen,
        echoes_kept=settings.echoes_kept,
        item_ttl_s=settings.story_ttl_s + settings.window_s,
        story_ttl_s=settings.story_ttl_s,
        hnsw=(settings.hnsw_m, settings.hnsw_ef_construction, settings.hnsw_ef_runtime),
    )


def make_consumer(redis: object, settings: DedupSettings, dedup: Deduplicator, name: str) -> StreamConsumer:
    return StreamConsumer(
        redis,  # type: ignore[arg-type]
        settings.raw_stream,
        settings.group,
        name,
        dedup.handle,
        label="dedup",
        batch=settings.read_batch,
        reclaim_idle_ms=settings.reclaim_idle_ms,
        max_deliveries=settings.max_deliveries,
        concurrency=settings.concurrency,
    )


async def _sweep_forever(dedup: Deduplicator, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            swept = await dedup.sweep()
            if swept:
                log.info("swept %d stories out of the window", swept)
        except Exception:
            log.exception("sweep failed; trying again next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def serve(settings: DedupSettings, stop: asyncio.Event | None = None) -> None:
    setup_logging("dedup", settings.log_level, settings.log_format)
    setup_telemetry("dedup", settings.otel_exporter, settings.otel_endpoint)
    stop = stop or asyncio.Event()
    ready = asyncio.Event()

    async def embedder_ready() -> None:
        if not ready.is_set():
            raise RuntimeError("waiting for the embedder on the model server")

    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        client = ModelClient(
            settings.model_server_addr, deadline_s=settings.model_deadline_s, embed_batch=settings.embed_batch
        )
        batcher = EmbedBatcher(client.embed, settings.embed_batch)
        store = make_store(redis, settings)
        thresholds = Thresholds(settings.duplicate_threshold, settings.new_threshold, settings.min_anchors)
        dedup = Deduplicator(store, batcher.embed, thresholds, settings.window_s, settings.neighbours)
        server = GrpcServer(
            "dedup",
            settings.listen,
            [
                Registration(
                    dedup_pb2.DESCRIPTOR.services_by_name["DedupService"].full_name,
                    dedup_pb2_grpc.add_DedupServiceServicer_to_server,
                    DedupServicer(dedup, settings.window_s),
                )
            ],
            checks={"redis": redis.ping, "embedder": embedder_ready},
        )
        await server.start()
        tasks: list[asyncio.Task[None]] = []
        consumers_stop = asyncio.Event()
        try:
            signal_wait = asyncio.create_task(wait_for_shutdown_signal(stop))
            probe = await wait_for_embedder(client, stop)
            if probe is not None:
                dim = len(probe)
                await store.ensure_index(dim, probe)
                ready.set()
                await server.check_once()
                log.info("dedup ready", extra={"dim": dim, "window_s": settings.window_s})
                for n in range(settings.consumers):
                    consumer = make_consumer(redis, settings, dedup, f"{settings.consumer}-{n}")
                    tasks.append(
                        asyncio.create_task(consumer.run(consumers_stop), name=f"dedup-consumer-{n}")
                    )
                tasks.append(
                    asyncio.create_task(_sweep_forever(dedup, settings.sweep_interval_s, consumers_stop))
                )
            await signal_wait
        finally:
            consumers_stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await batcher.close()
            await client.close()
            await server.stop(settings.shutdown_grace_s)
