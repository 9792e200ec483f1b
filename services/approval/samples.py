"""Realistic pending signals, as the analysis service writes them: for tests, benchmarks and demos."""

from __future__ import annotations

import time

from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2
from tapewatch.news.v1 import news_pb2

HEADLINES = [
    (
        "Binance pauses withdrawals after suspicious outflows from a hot wallet; team investigating",
        "binance",
        news_pb2.PLATFORM_EXCHANGE,
        analysis_pb2.EVENT_TYPE_HACK_OR_EXPLOIT,
        analysis_pb2.DIRECTION_BEARISH,
        ["BTC", "BNB"],
        "Exchange-level incident on the largest venue; past withdrawal halts moved BTC 2-4% within minutes.",
    ),
    (
        "SEC approves spot ETH ETF options listing on Nasdaq ISE, filing shows",
        "coindesk",
        news_pb2.PLATFORM_NEWSWIRE,
        analysis_pb2.EVENT_TYPE_ETF,
        analysis_pb2.DIRECTION_BULLISH,
        ["ETH"],
        "Approval widens access to ETH exposure; similar ETF milestones led to a bid within the hour.",
    ),
    (
        "Fed's Powell: further rate cuts 'not a foregone conclusion' as inflation stays sticky",
        "reuters",
        news_pb2.PLATFORM_NEWSWIRE,
        analysis_pb2.EVENT_TYPE_MACRO_RATES,
        analysis_pb2.DIRECTION_BEARISH,
        ["BTC", "ETH"],
        "Hawkish surprise from the Fed chair; risk assets sold off on comparable remarks this year.",
    ),
    (
        "Tether mints 2B USDT on Tron as stablecoin supply hits a record high",
        "whale_alert",
        news_pb2.PLATFORM_X,
        analysis_pb2.EVENT_TYPE_STABLECOIN,
        analysis_pb2.DIRECTION_BULLISH,
        ["BTC"],
        "Large mints have preceded spot buying; the effect is usually modest and slow.",
    ),
    (
        "Solana validators report block production stalled; core devs coordinating a restart",
        "solana_status",
        news_pb2.PLATFORM_EXCHANGE,
        analysis_pb2.EVENT_TYPE_EXCHANGE_OUTAGE,
        analysis_pb2.DIRECTION_BEARISH,
        ["SOL"],
        "Network halts have hit SOL 5-10% intraday; exchanges pause deposits, so liquidity thins fast.",
    ),
]


def sample_signal(
    signal_id: str,
    n: int = 0,
    *,
    created_ms: int | None = None,
    widening_bps: float = 12.0,
    skew_bps: float | None = None,
    horizon_minutes: int = 30,
) -> approval_pb2.Signal:
    text, source, platform, event_type, direction, assets, rationale = HEADLINES[n % len(HEADLINES)]
    now_ms = created_ms if created_ms is not None else int(time.time() * 1000)
    bearish = direction == analysis_pb2.DIRECTION_BEARISH
    skew = skew_bps if skew_bps is not None else (-6.0 if bearish else 6.0)
    item = news_pb2.NewsItem(
        id=f"item-{signal_id}",
        source=source,
        source_item_id=signal_id,
        platform=platform,
        author=source,
        url=f"https://example.com/{source}/{signal_id}",
        text=text,
        language="en",
    )
    item.published_at.FromMilliseconds(now_ms - 4000)
    item.received_at.FromMilliseconds(now_ms - 3500)
    story = news_pb2.Story(
        id=f"story-{signal_id}",
        first_item=item,
        echo_count=7,
        sources=[source, "x", "r/CryptoCurrency", "telegram"],
        platforms=[platform, news_pb2.PLATFORM_X],
        echo_rate_per_min=3.5,
    )
    impact = analysis_pb2.MarketImpact(
        materiality=analysis_pb2.MATERIALITY_HIGH,
        event_type=event_type,
        urgency=analysis_pb2.URGENCY_IMMEDIATE,
        horizon_minutes=horizon_minutes,
        confidence=0.82,
        rationale=rationale,
        judged_by=analysis_pb2.JUDGED_BY_LLM,
        prompt_version="judge-v3",
        model="llm",
        raw_judgement='{"material": true}',
    )
    for i, asset in enumerate(assets):
        impact.assets.add(
            asset=asset,
            direction=direction,
            vol_burst_probability=0.71 - 0.1 * i,
            quoting_probability=0.64 - 0.1 * i,
        )
    signal = approval_pb2.Signal(id=signal_id, story_id=story.id, story=story, impact=impact)
    for i, asset in enumerate(assets):
        signal.adjustments.add(
            asset=asset,
            widening_bps=widening_bps - 2 * i,
            skew_bps=skew,
            vol_multiplier=1.4,
            horizon_minutes=horizon_minutes,
            direction=direction,
            quoting_probability=0.64 - 0.1 * i,
        )
    signal.created_at.FromMilliseconds(now_ms)
    signal.state = approval_pb2.SIGNAL_STATE_PENDING
    return signal
