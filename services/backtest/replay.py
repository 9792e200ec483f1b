"""The news through the real pipeline, in event time.

Every stage is the service's own code, wired in this process to one throw-away Redis Stack and a real model
server, and driven one item at a time: ingest (validate, store once on `news.raw`), dedup (its consumer:
embed, search the window, rule, story or echo onto `news.unique`), analysis (its consumer: the judge, the
market state from the price file, the policy, the pending signal on `signals.pending`), approval (its
consumer admits the signal; a scripted trader decides through the desk, exactly-once, onto
`signals.approved`) and the quoting adapter (its consumer stores the approved signal as SignalAdjustments,
with its decay policy and caps). What the adapter stored is what the backtest quotes with.

Event time. Each item starts at its `published_at`; the stages' clocks run on from there at wall speed, so
an item's own pipeline latency on this machine is in its times (the signal is pending at published_at +
that latency). The trader decides `approval_delay` after the signal is pending (0: the machine alone) and
the adjustment starts at the decision, as live. Items go through one at a time, each from its own
published time: queueing behind an earlier item is not modelled (the tape is sparse here).

The scripted trader approves every signal of at least the floor's materiality and leaves the others to
expire. Which judge: `llm` is the service as deployed (the model, rules when it fails); `rules` is the
service with no model configured, i.e. its own fallback judge.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from quoting.adjustments import SignalAdjustment
from services.analysis.analyst import platform_name
from services.analysis.market import SeriesFeed
from services.analysis.service import StoryDesk, build_analyst, embedder, embedder_probe, open_archive
from services.analysis.settings import AnalysisSettings
from services.approval.auth import Identity
from services.approval.desk import ApprovalDesk
from services.approval.settings import ApprovalSettings
from services.approval.store import SignalStore
from services.dedup.embedding import EmbedBatcher
from services.dedup.rule import Thresholds
from services.dedup.service import Deduplicator, make_consumer, make_store
from services.dedup.settings import DedupSettings
from services.evals.impact import NewsRow
from services.ingest.normalize import InvalidItem, platform_from_name, validate
from services.ingest.settings import IngestSettings
from services.ingest.store import RawNewsStore
from services.model_client import ModelClient
from services.quoting_adapter.clock import ManualClock
from services.quoting_adapter.service import QuotingAdapter
from services.quoting_adapter.settings import QuotingSettings
from services.runtime.errors import FailedPrecondition
from services.runtime.streams import StreamConsumer
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2

MATERIALITY = {"notable": analysis_pb2.MATERIALITY_NOTABLE, "high": analysis_pb2.MATERIALITY_HIGH}
TRADER = Identity(name="backtest-trader", role="trader", via="api_token")


class EventClock:
    """Event time: the current item's published time plus the wall time spent on it since."""

    def __init__(self) -> None:
        self._at = datetime.fromtimestamp(0, UTC)
        self._wall = time.monotonic()

    def start(self, when: datetime) -> None:
        self._at, self._wall = when, time.monotonic()

    def __call__(self) -> datetime:
        return self._at + timedelta(seconds=time.monotonic() - self._wall)


@dataclass(frozen=True)
class TraderPolicy:
    floor: str = "notable"  # approve this materiality and above
    delay: timedelta = timedelta(seconds=10)

    def approves(self, signal: approval_pb2.Signal) -> bool:
        return signal.impact.materiality >= MATERIALITY[self.floor]


@dataclass
class Replayed:
    """What the replay produced: the adapter's adjustments for the asset, and what happened on the way."""

    signals: list[SignalAdjustment] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    judged_by: Counter[str] = field(default_factory=Counter)
    materiality: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"pending": [], "analysed": []})
    model_label: str = ""


def news_item(row: NewsRow, index: int) -> news_pb2.NewsItem:
    item = news_pb2.NewsItem(
        source=row.platform,
        source_item_id=f"{row.published_ms}-{index}",
        platform=platform_from_name(row.platform),
        author=row.author,
        text=row.text,
    )
    item.published_at.FromMilliseconds(row.published_ms)
    return item


class Pipeline:
    """The stages, wired to one Redis and one model server, stepped one item at a time."""

    def __init__(
        self,
        redis: aioredis.Redis,
        model: ModelClient,
        data_dir: Path,
        asset: str,
        feed: SeriesFeed,
        judge: str,
        policy: TraderPolicy,
        model_deadline_s: float | None = None,
    ) -> None:
        self.redis, self.model, self.asset, self.policy = redis, model, asset, policy
        self.events = EventClock()
        self.trader_clock = ManualClock(datetime.fromtimestamp(0, UTC))
        self.quoting_clock = ManualClock(datetime.fromtimestamp(0, UTC))
        common: dict[str, Any] = {"data_dir": data_dir}
        self.ingest_settings = IngestSettings.load(**common)
        self.dedup_settings = DedupSettings.load(**common, consumer_name="backtest")
        extra = {} if model_deadline_s is None else {"model_deadline_s": model_deadline_s}
        self.analysis_settings = AnalysisSettings.load(
            **common, quoted_assets=(asset,), always_assets=(asset,), consumer_name="backtest", **extra
        )
        self.approval_settings = ApprovalSettings.load(**common)
        self.quoting_settings = QuotingSettings.load(**common, consumer_name="backtest")
        self.feed = feed
        self.judge = judge
        self.result = Replayed()
        self._seen_signals: set[str] = set()

    @contextlib.asynccontextmanager
    async def wired(self) -> AsyncIterator[Pipeline]:
        s = self.ingest_settings
        self.raw = RawNewsStore(self.redis, s.raw_stream, s.seen_ttl_s, s.stream_maxlen)
        probe = await embedder_probe(self.model)
        dim = len(probe) if probe is not None else self.analysis_settings.embedding_dim

        d = self.dedup_settings
        batcher = EmbedBatcher(self.model.embed, d.embed_batch)
        story_store = make_store(self.redis, d)
        await story_store.ensure_index(dim, probe)
        thresholds = Thresholds(d.duplicate_threshold, d.new_threshold, d.min_anchors)
        self.dedup = Deduplicator(story_store, batcher.embed, thresholds, d.window_s, d.neighbours)
        self.dedup_consumer = make_consumer(self.redis, d, self.dedup, d.consumer)

        a = self.analysis_settings
        self.archive = await open_archive(a, self.redis, self.model)
        analyst = build_analyst(a, self.model if self.judge == "llm" else None, self.feed)
        self.result.model_label = a.model_label if self.judge == "llm" else "rules (no model configured)"
        desk = StoryDesk(analyst, self.archive, self.redis, a, None, embedder(self.model), self.events)
        self.analysis_consumer = StreamConsumer(
            self.redis, a.news_stream, a.consumer_group, a.consumer_name, desk.handle, label="analysis"
        )

        p = self.approval_settings
        store = SignalStore(self.redis, p.approved_stream, p.history_size, p.decided_ttl_s, p.approved_maxlen)
        self.approval = ApprovalDesk(store, p, clock=lambda: self.trader_clock.now().timestamp())
        self.approval_consumer = StreamConsumer(
            self.redis, p.pending_stream, p.consumer_group, "backtest", self.approval.admit, label="approval"
        )

        self.adapter = QuotingAdapter(self.redis, self.quoting_settings, self.quoting_clock)
        stages = (self.dedup_consumer, self.analysis_consumer, self.approval_consumer, self.adapter.consumer)
        for consumer in stages:
            consumer.block_ms = 1  # stepped: each stage's input is already there when it reads
            await consumer.ensure_group()
        try:
            yield self
        finally:
            await self.adapter.live.close()
            await batcher.close()

    async def step(self, item: news_pb2.NewsItem) -> None:
        """One item through every stage, in its own event time."""
        counts = self.result.counts
        published = item.published_at.ToDatetime(tzinfo=UTC)
        self.events.start(published)
        started = time.perf_counter()
        try:
            stored = await self.raw.put(validate(item, self.events()))
        except InvalidItem:
            counts["rejected_by_ingest"] += 1
            return
        if stored.duplicate:
            counts["duplicates_at_ingest"] += 1
            return
        counts["items"] += 1
        await self.dedup_consumer.read_new()
        story_id = await self.dedup.store.item_story(stored.item_id)
        if story_id is None:
            counts["rejected_by_dedup"] += 1  # nothing left of the text to compare (links, emoji only)
            return
        if not await self.analysis_consumer.read_new():
            counts["echoes"] += 1  # attached to a story analysed before: nothing reaches the LLM
            return
        counts["stories"] += 1
        self.trader_clock.set(self.events())
        await self.approval_consumer.read_new()
        elapsed_ms = (time.perf_counter() - started) * 1000
        record = await self.archive.record(story_id)
        if record is not None:
            self.result.judged_by[record["judged_by"]] += 1
            self.result.materiality[record["materiality"]] += 1
        pending = [s for s in await self.approval.store.pending() if s.id not in self._seen_signals]
        self.result.latency_ms["pending" if pending else "analysed"].append(elapsed_ms)
        for signal in pending:
            self._seen_signals.add(signal.id)
            counts["signals"] += 1
            await self._decide(signal, published, published + timedelta(milliseconds=elapsed_ms))

    async def _decide(self, signal: approval_pb2.Signal, published: datetime, pending_at: datetime) -> None:
        counts = self.result.counts
        if not self.policy.approves(signal):
            counts["left_to_expire"] += 1
            return
        decided_at = pending_at + self.policy.delay
        self.trader_clock.set(decided_at)
        request = approval_pb2.DecideRequest(
            signal_id=signal.id,
            action=approval_pb2.ACTION_APPROVE,
            reason=f"backtest policy: {self.policy.floor} and above",
        )
        try:
            await self.approval.decide(TRADER, request)
        except FailedPrecondition:
            counts["expired_before_decision"] += 1
            return
        counts["approved"] += 1
        self.quoting_clock.set(decided_at)
        await self.adapter.consumer.read_new()
        inputs = self.adapter.live.inputs.get(self.asset)
        applied = [s for s in (inputs.signals if inputs else ()) if s.signal_id == signal.id]
        self.result.signals.extend(applied)
        for a in applied:
            self.result.decisions.append(
                {
                    "signal_id": signal.id,
                    "published_at": published.isoformat(),
                    "pending_at": pending_at.isoformat(timespec="milliseconds"),
                    "decided_at": a.started_at.isoformat(timespec="milliseconds"),
                    "author": signal.story.first_item.author,
                    "platform": platform_name(signal.story.first_item.platform),
                    "text": signal.story.first_item.text[:140],
                    "materiality": analysis_pb2.Materiality.Name(signal.impact.materiality)
                    .removeprefix("MATERIALITY_")
                    .lower(),
                    "judged_by": "llm" if signal.impact.judged_by == analysis_pb2.JUDGED_BY_LLM else "rules",
                    "widening_bps": a.widening_bps,
                    "skew_bps": a.skew_bps,
                    "vol_multiplier": a.vol_multiplier,
                    "horizon_minutes": a.horizon.total_seconds() / 60,
                    "decay": a.decay,
                }
            )


async def replay(
    rows: Sequence[NewsRow],
    redis_url: str,
    model: ModelClient,
    data_dir: Path,
    asset: str,
    feed: SeriesFeed,
    judge: str,
    policy: TraderPolicy,
    model_deadline_s: float | None = None,
) -> Replayed:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        pipeline = Pipeline(redis, model, data_dir, asset, feed, judge, policy, model_deadline_s)
        async with pipeline.wired():
            for index, row in enumerate(rows):
                await pipeline.step(news_item(row, index))
        return pipeline.result
    finally:
        await redis.aclose()
