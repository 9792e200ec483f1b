"""From a news item to an assessment: assets (alias table), judgement (model or rules), market state,
quoting probabilities and the policy's recommended adjustments. No I/O besides the model and the feed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.analysis.assets import mentions
from services.analysis.judge import Judge, Verdict
from services.analysis.market import MarketFeed, MarketState, ProbabilityModel
from services.analysis.policy import Policy
from services.analysis.prompt import StoryView
from services.analysis.rules import looks_like_instructions
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2

INSTRUCTIONS_NOTE = "story holds instructions to the analyst (ignored)"


@dataclass(frozen=True)
class Assessment:
    impact: analysis_pb2.MarketImpact
    adjustments: list[approval_pb2.AssetAdjustment]
    verdict: Verdict
    markets: dict[str, MarketState]
    p_market: dict[str, float]
    p_news: dict[str, float]
    p_quoting: dict[str, float]
    instructions_in_story: bool
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def material(self) -> bool:
        return self.impact.materiality in (analysis_pb2.MATERIALITY_NOTABLE, analysis_pb2.MATERIALITY_HIGH)


def platform_name(platform: int) -> str:
    name = (
        news_pb2.Platform.Name(platform) if platform in news_pb2.Platform.values() else "PLATFORM_UNSPECIFIED"
    )
    return name.removeprefix("PLATFORM_").lower()


@dataclass
class Analyst:
    judge: Judge
    feed: MarketFeed
    policy: Policy
    probabilities: ProbabilityModel = field(default_factory=ProbabilityModel)
    quoted_assets: tuple[str, ...] = ("BTC", "ETH")
    always_assets: tuple[str, ...] = ()
    max_assets: int = 4
    model_label: str = ""

    def assets_for(self, text: str) -> tuple[str, ...]:
        named = mentions(text)[: self.max_assets]
        chosen = named or list(self.quoted_assets)
        return tuple(dict.fromkeys([*chosen, *self.always_assets]))

    def story_view(self, item: news_pb2.NewsItem, echoes: int) -> StoryView:
        return StoryView(
            text=item.text,
            platform=platform_name(item.platform),
            source=item.source,
            author=item.author,
            assets=self.assets_for(item.text),
            echoes=echoes,
            published_at=item.published_at.ToDatetime(tzinfo=UTC) if item.HasField("published_at") else None,
        )

    async def assess(self, item: news_pb2.NewsItem, echoes: int, now: datetime) -> Assessment:
        started = time.perf_counter()
        story = self.story_view(item, echoes)
        now_ms = int(now.timestamp() * 1000)
        verdict, states = await asyncio.gather(
            self.judge.judge(story), asyncio.gather(*(self.feed.state(a, now_ms) for a in story.assets))
        )
        markets = {s.asset: s for s in states}
        j = verdict.judgement
        p_market = {a: self.probabilities.market(markets[a]) for a in story.assets}
        p_news = {a: self.probabilities.news(v.vol_burst_probability, echoes) for a, v in j.assets.items()}
        p_quoting = {a: self.probabilities.quoting(p_market[a], p_news[a]) for a in story.assets}
        instructions = looks_like_instructions(item.text)
        rationale = f"{INSTRUCTIONS_NOTE}; {j.rationale}" if instructions else j.rationale
        impact = analysis_pb2.MarketImpact(
            materiality=analysis_pb2.Materiality.Value(f"MATERIALITY_{j.materiality.upper()}"),
            event_type=analysis_pb2.EventType.Value(f"EVENT_TYPE_{j.event_type.upper()}"),
            assets=[
                analysis_pb2.AssetImpact(
                    asset=a,
                    direction=analysis_pb2.Direction.Value(f"DIRECTION_{v.direction.upper()}"),
                    vol_burst_probability=round(v.vol_burst_probability, 4),
                    quoting_probability=round(p_quoting[a], 4),
                )
                for a, v in j.assets.items()
            ],
            urgency=analysis_pb2.Urgency.Value(f"URGENCY_{j.urgency.upper()}"),
            horizon_minutes=self.policy.horizon(j.horizon_minutes),
            confidence=round(j.confidence, 3),
            rationale=rationale,
            judged_by=analysis_pb2.JUDGED_BY_LLM
            if verdict.judged_by == "llm"
            else analysis_pb2.JUDGED_BY_RULES_FALLBACK,
            prompt_version=self.judge.prompt.version,
            model=self.model_label if verdict.judged_by == "llm" else f"rules ({verdict.fallback_reason})",
            raw_judgement=verdict.raw,
        )
        adjustments = self.policy.adjustments(j, p_quoting) if self.policy.is_material(j) else []
        return Assessment(
            impact=impact,
            adjustments=adjustments,
            verdict=verdict,
            markets=markets,
            p_market=p_market,
            p_news=p_news,
            p_quoting=p_quoting,
            instructions_in_story=instructions,
            timings_ms={
                "model_ms": round(verdict.model_ms, 1),
                "total_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
