"""AnalysisService and the analysis stage of the pipeline.

- Consumes `news.unique` (group "analysis"): each Story is judged (model, or rules when the model is
  down / slow / wrong twice), combined with the asset's market state, turned into recommended adjustments
  by the policy, and archived (Redis, TTL + JSONL). Notable and high stories become PENDING signals on
  `signals.pending` (published inside the consumer span, so the trace continues) and an alert goes to
  Slack / Telegram. Routine stories are archived only. Acknowledged after all that; a redelivered story
  that was done is acknowledged without a second signal.
- Analyze(item): the same assessment, synchronous, nothing published or archived (console, tests).
- Ask(question, window): an extractive answer from the archived stories of the window, citing story ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import grpc
import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry import metrics, trace

from quoting.adjustments import Caps
from services.analysis.alerts import Alerter
from services.analysis.analyst import Analyst, Assessment, platform_name
from services.analysis.archive import EMBED_CHARS, Archive, Embed
from services.analysis.ask import Asker, parse_question
from services.analysis.judge import Judge
from services.analysis.market import MarketFeed, MarketWindow, ProbabilityModel, RedisMarketFeed
from services.analysis.policy import Policy
from services.analysis.prompt import load_prompt
from services.analysis.settings import AnalysisSettings
from services.ingest.normalize import InvalidItem, validate
from services.model_client import ModelClient, ModelError
from services.model_client.fingerprint import PROBE_TEXT
from services.runtime.errors import InvalidArgument
from services.runtime.logs import setup_logging
from services.runtime.redis_client import open_redis
from services.runtime.server import GrpcServer, Registration, wait_for_shutdown_signal
from services.runtime.streams import Message, Reject, StreamConsumer, publish
from services.runtime.telemetry import setup_telemetry, trace_id_hex
from tapewatch.analysis.v1 import analysis_pb2, analysis_pb2_grpc
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2

log = logging.getLogger("tapewatch.analysis")
stories_counter = metrics.get_meter("tapewatch.analysis").create_counter(
    "tapewatch.analysis.stories", description="stories analysed, by outcome"
)
MAX_ECHOES = 1_000_000
LLM_USAGE_KEY = "tw:analysis:llm"  # hash: tokens, seconds, calls
EMBED_DEADLINE_S = 3.0


def _now() -> datetime:
    return datetime.now(UTC)


def signal_id_for(story_id: str) -> str:
    """One signal per story, whatever the number of deliveries."""
    return "sg_" + hashlib.sha256(story_id.encode()).hexdigest()[:20]


def make_signal(story: news_pb2.Story, a: Assessment, now: datetime, expiry_s: int) -> approval_pb2.Signal:
    signal = approval_pb2.Signal(
        id=signal_id_for(story.id),
        story_id=story.id,
        story=story,
        impact=a.impact,
        adjustments=a.adjustments,
        state=approval_pb2.SIGNAL_STATE_PENDING,
        trace_id=trace_id_hex(),
    )
    signal.created_at.FromDatetime(now)
    signal.expires_at.FromDatetime(now + timedelta(seconds=expiry_s))
    return signal


def archive_record(
    story: news_pb2.Story, a: Assessment, now: datetime, signal_id: str, alerts: dict[str, str] | None = None
) -> dict[str, Any]:
    item = story.first_item
    impact = a.impact
    return {
        "story_id": story.id,
        "analysed_ms": int(now.timestamp() * 1000),
        "published_ms": item.published_at.ToMilliseconds() if item.HasField("published_at") else 0,
        "author": item.author,
        "source": item.source,
        "platform": platform_name(item.platform),
        "url": item.url,
        "text": item.text,
        "echo_count": story.echo_count,
        "sources": list(story.sources),
        "assets": [x.asset for x in impact.assets],
        "materiality": analysis_pb2.Materiality.Name(impact.materiality).removeprefix("MATERIALITY_").lower(),
        "event_type": analysis_pb2.EventType.Name(impact.event_type).removeprefix("EVENT_TYPE_").lower(),
        "impact": json_format.MessageToDict(impact, preserving_proto_field_name=True),
        "adjustments": [
            json_format.MessageToDict(x, preserving_proto_field_name=True) for x in a.adjustments
        ],
        "signal_id": signal_id,
        "judged_by": a.verdict.judged_by,
        "fallback_reason": a.verdict.fallback_reason,
        "attempts": a.verdict.attempts,
        "prompt_version": impact.prompt_version,
        "model": impact.model,
        "instructions_in_story": a.instructions_in_story,
        "market": {k: v.as_dict() for k, v in a.markets.items()},
        "p_market": a.p_market,
        "p_news": a.p_news,
        "p_quoting": a.p_quoting,
        "timings_ms": a.timings_ms,
        "alerts": alerts or {},
        "trace_id": trace_id_hex(),
    }


class StoryDesk:
    """The `news.unique` handler."""

    def __init__(
        self,
        analyst: Analyst,
        archive: Archive,
        redis: aioredis.Redis,
        settings: AnalysisSettings,
        alerter: Alerter | None,
        embed: Embed,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.analyst = analyst
        self.archive = archive
        self.redis = redis
        self.settings = settings
        self.alerter = alerter
        self.embed = embed
        self.clock = clock

    async def handle(self, m: Message) -> None:
        try:
            story = news_pb2.Story.FromString(m.data)
        except DecodeError as exc:
            raise Reject(f"not a Story: {exc}") from None
        if not story.id or not story.HasField("first_item") or not story.first_item.text.strip():
            raise Reject("story without id, first_item or text")
        span = trace.get_current_span()
        span.set_attribute("tapewatch.story_id", story.id)
        if await self.archive.done(story.id):
            stories_counter.add(1, {"outcome": "redelivered"})
            return
        now = self.clock()
        a, vector = await asyncio.gather(
            self.analyst.assess(story.first_item, story.echo_count, now), self.embed(story.first_item.text)
        )
        span.set_attribute("tapewatch.judged_by", a.verdict.judged_by)
        signal_id = signal_id_for(story.id) if a.material else ""
        alerts: dict[str, str] = {}
        if a.material:
            signal = make_signal(story, a, now, self.settings.signal_expiry_s)
            await publish(
                self.redis, self.settings.signals_stream, signal.SerializeToString(), signal.id,
                maxlen=self.settings.stream_maxlen,
            )  # fmt: skip
            if self.alerter and self.alerter.channels:
                alerts = await self.alerter.send(signal)
        await self.archive.put(archive_record(story, a, now, signal_id, alerts), vector)
        await self.archive.mark_done(story.id, signal_id)
        if a.verdict.tokens:
            await record_llm_usage(self.redis, a.verdict.tokens, a.verdict.generate_s)
        stories_counter.add(
            1, {"outcome": "signal" if a.material else "archived", "judged_by": a.verdict.judged_by}
        )


async def record_llm_usage(redis: aioredis.Redis, tokens: int, seconds: float) -> None:
    """Running totals the live view turns into tokens/s."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(LLM_USAGE_KEY, "tokens", tokens)
        pipe.hincrbyfloat(LLM_USAGE_KEY, "seconds", seconds)
        pipe.hincrby(LLM_USAGE_KEY, "calls", 1)
        await pipe.execute()


class AnalysisServicer(analysis_pb2_grpc.AnalysisServiceServicer):
    def __init__(
        self, analyst: Analyst, asker: Asker, settings: AnalysisSettings, clock: Callable[[], datetime] = _now
    ) -> None:
        self.analyst = analyst
        self.asker = asker
        self.settings = settings
        self.clock = clock

    async def Analyze(
        self, request: analysis_pb2.AnalyzeRequest, context: grpc.aio.ServicerContext
    ) -> analysis_pb2.AnalyzeResponse:
        if not request.HasField("item"):
            raise InvalidArgument("item is missing")
        if not 0 <= request.echo_count <= MAX_ECHOES:
            raise InvalidArgument(f"echo_count must be in 0..{MAX_ECHOES:,}, got {request.echo_count}")
        now = self.clock()
        try:
            item = validate(request.item, now)
        except InvalidItem as exc:
            raise InvalidArgument(f"invalid news item: {exc}") from None
        a = await self.analyst.assess(item, request.echo_count, now)
        return analysis_pb2.AnalyzeResponse(
            impact=a.impact, latency_ms=int(a.timings_ms["total_ms"]), trace_id=trace_id_hex()
        )

    async def Ask(
        self, request: analysis_pb2.AskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[analysis_pb2.AskChunk]:
        question = request.question.strip()
        if not question:
            raise InvalidArgument("question is empty")
        if len(question) > self.settings.ask_max_question_chars:
            limit = self.settings.ask_max_question_chars
            raise InvalidArgument(f"question is {len(question):,} characters, over the {limit:,} limit")
        if not request.HasField("window"):
            raise InvalidArgument("window is missing: how far back to look, e.g. 10 hours")
        window = request.window.ToTimedelta()
        longest = timedelta(days=self.settings.ask_max_window_days)
        if window <= timedelta(0):
            raise InvalidArgument(f"window must be more than 0, got {request.window.ToJsonString()}")
        if window > longest:
            days = self.settings.ask_max_window_days
            raise InvalidArgument(f"window {request.window.ToJsonString()} is longer than {days:g} days")
        parsed = parse_question(question, await self.asker.archive.authors())
        async for chunk in self.asker.answer(parsed, self.clock(), window):
            yield chunk


def build_analyst(settings: AnalysisSettings, model: ModelClient | None, feed: MarketFeed) -> Analyst:
    judge = Judge(
        model,
        load_prompt(settings.prompt_version),
        deadline_s=settings.model_deadline_s,
        max_tokens=settings.max_tokens,
        retry_temperature=settings.retry_temperature,
        slots=asyncio.Semaphore(settings.model_concurrency),
    )
    policy = Policy(
        Caps(settings.max_widening_bps, settings.max_vol_multiplier, settings.max_skew_bps),
        settings.min_horizon_minutes,
        settings.max_horizon_minutes,
    )
    probabilities = ProbabilityModel(
        market_base_rate=settings.market_base_rate,
        vol_ratio_weight=settings.vol_ratio_weight,
        move_ratio_weight=settings.move_ratio_weight,
        active_hours_utc=settings.active_hours_utc,
        active_hours_log_odds=settings.active_hours_log_odds,
        news_weight=settings.news_weight,
        news_base_rate=settings.news_base_rate,
        echo_log_odds=settings.echo_log_odds,
    )
    return Analyst(
        judge, feed, policy, probabilities, settings.quoted_assets, settings.always_assets,
        settings.max_assets, settings.model_label,
    )  # fmt: skip


def market_window(settings: AnalysisSettings) -> MarketWindow:
    return MarketWindow(settings.recent_minutes, settings.baseline_hours, settings.min_history_minutes)


def embedder(model: ModelClient | None) -> Embed:
    async def embed(text: str) -> npt.NDArray[np.float32] | None:
        if model is None or not text.strip():
            return None
        try:
            return (await model.embed([text[:EMBED_CHARS]], deadline_s=EMBED_DEADLINE_S))[0]
        except ModelError as exc:
            log.warning("embedding unavailable: %s", exc)
            return None

    return embed


async def embedder_probe(model: ModelClient) -> npt.NDArray[np.float32] | None:
    """The embedder's vector for PROBE_TEXT (its size and fingerprint), None when it is down."""
    try:
        return (await model.embed([PROBE_TEXT], deadline_s=EMBED_DEADLINE_S))[0]
    except ModelError as exc:
        log.warning("embedder down at start (%s): archive vectors not checked against it", exc)
        return None


async def open_archive(
    settings: AnalysisSettings, redis: aioredis.Redis, model: ModelClient | None
) -> Archive:
    """The archive, its index sized for the embedder; stories embedded again when the embedder changed."""
    probe = await embedder_probe(model) if model else None
    dim = len(probe) if probe is not None else settings.embedding_dim
    archive = Archive(redis, settings.data_dir / "analysis" / "archive", settings.hot_ttl_s, dim)
    if await archive.ensure_index(probe) and model and probe is not None:
        started = time.perf_counter()
        count = await archive.reembed(model.embed, probe)
        log.warning(
            "the embedder changed: %d archived stories embedded again in %.1fs",
            count, time.perf_counter() - started,
        )  # fmt: skip
    return archive


@dataclass
class RunningAnalysis:
    server: GrpcServer
    consumer: StreamConsumer
    desk: StoryDesk
    archive: Archive
    analyst: Analyst

    @property
    def port(self) -> int:
        return self.server.port


@contextlib.asynccontextmanager
async def running(
    settings: AnalysisSettings,
    redis: aioredis.Redis,
    model: ModelClient | None,
    session: aiohttp.ClientSession,
    clock: Callable[[], datetime] = _now,
) -> AsyncIterator[RunningAnalysis]:
    """The wired service: gRPC server and `news.unique` consumer, running until the block exits."""
    archive = await open_archive(settings, redis, model)
    feed = RedisMarketFeed(redis, settings.market_prefix, market_window(settings))
    analyst = build_analyst(settings, model, feed)
    embed = embedder(model)
    alerter = Alerter(
        session, settings.slack_webhook_url, settings.telegram_bot_token, settings.telegram_chat_id,
        settings.telegram_api_base, settings.alert_timeout_s,
    )  # fmt: skip
    desk = StoryDesk(analyst, archive, redis, settings, alerter, embed, clock)
    width = settings.consumer_concurrency
    consumer = StreamConsumer(
        redis, settings.news_stream, settings.consumer_group, settings.consumer_name, desk.handle,
        label="analysis", batch=2 * width, concurrency=width, block_ms=100,
    )  # fmt: skip
    servicer = AnalysisServicer(analyst, Asker(archive, embed, settings.ask_max_citations), settings, clock)
    server = GrpcServer(
        "analysis",
        settings.listen,
        [
            Registration(
                analysis_pb2.DESCRIPTOR.services_by_name["AnalysisService"].full_name,
                analysis_pb2_grpc.add_AnalysisServiceServicer_to_server,
                servicer,
            )
        ],
        checks={"redis": redis.ping},
    )
    await server.start()
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop), name="analysis-consumer")
    try:
        yield RunningAnalysis(server, consumer, desk, archive, analyst)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(consuming, settings.shutdown_grace_s + settings.model_deadline_s)
        await server.stop(settings.shutdown_grace_s)


async def serve(settings: AnalysisSettings, stop: asyncio.Event | None = None) -> None:
    setup_logging("analysis", settings.log_level, settings.log_format)
    setup_telemetry("analysis", settings.otel_exporter, settings.otel_endpoint)
    async with (
        open_redis(settings.redis_url, settings.data_dir) as redis,
        ModelClient(settings.model_server_addr, deadline_s=settings.model_deadline_s, retries=1) as model,
        aiohttp.ClientSession() as session,
        running(settings, redis, model, session),
    ):
        await wait_for_shutdown_signal(stop)
