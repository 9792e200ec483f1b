"""`tapewatch backtest --news NEWS.csv --prices PRICES.csv --json`: what the signals are worth on real prices.

The news (the NEWS format of `tapewatch eval impact`, or the shared Musk / Trump files read directly) goes
through the real pipeline in event time (services/backtest/replay.py): ingest, dedup, analysis on the model
server, a scripted trader (--approve notable|high, --approval-delay-s) and the quoting adapter. The
reference engine then quotes the asset over the bars (services/backtest/market.py: the fill model, the
windows, the markouts) three times, on the same bars and fills rule:
- static:    base quoting, no adjustment;
- tapewatch: the adjustments the adapter stored, combined in event time by quoting.adjustments.combine();
- oracle:    the policy's largest adjustment exactly while the realised 30-minute move is large
             (services/backtest/oracle.py): an upper bound on timing.
Each row: pnl, fees, fills, max_inventory (quote currency), adverse_selection (markout losses 1, 5 and
30 minutes after the fills; positive = lost), and more.

Only news inside the price windows can change a quote. --limit N replays whole windows, in time order,
while their news adds up to at most N items (at least one window; 0: every window with news); the rows are
quoted over those windows only. --judge rules runs analysis without a model (its own fallback judge): the
small CPU model judges almost every post routine, which leaves the tapewatch row at base.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from quoting.adjustments import QuoteAdjustment, combine
from quoting.engine import Bar, EngineConfig, load_bars
from services.analysis.market import SeriesFeed, load_price_bars
from services.analysis.service import build_analyst, market_window
from services.analysis.settings import AnalysisSettings
from services.backtest.market import Book, read_ranges, simulate, split_windows
from services.backtest.oracle import Oracle
from services.backtest.replay import MATERIALITY, Replayed, TraderPolicy, replay
from services.bench.machine import machine, percentile
from services.evals.impact import Labeller, NewsRow, load_news
from services.model_client import ModelClient
from services.quoting_adapter.settings import QuotingSettings
from services.runtime.redis_server import RedisStack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--news", type=Path, required=True, help="news CSV (formats: tapewatch eval impact)")
    parser.add_argument("--prices", type=Path, required=True, help="bars CSV of one asset: time, close, ...")
    parser.add_argument("--asset", default="DOGE", help="the asset the prices are for (default DOGE)")
    parser.add_argument("--author", help="author for news files without one")
    parser.add_argument("--platform", help="platform for news files without one (x, truth_social, ...)")
    parser.add_argument("--news-utc-offset", default="+01:00", help="for the curated Musk file's local times")
    parser.add_argument("--limit", type=int, default=20, help="news items, whole windows (0: all)")
    parser.add_argument("--model-server", help="host:port of a running model server (default: start one)")
    parser.add_argument("--judge", choices=("llm", "rules"), default="llm", help="analysis judge")
    parser.add_argument("--approve", choices=sorted(MATERIALITY), default="notable", help="trader's floor")
    parser.add_argument("--approval-delay-s", type=float, default=10.0, help="trader's reaction time")
    parser.add_argument("--model-deadline-s", type=float, help="analysis model deadline (default: service's)")
    engine = EngineConfig()
    parser.add_argument("--order-size", type=float, default=engine.order_size, help="base units")
    parser.add_argument("--max-inventory", type=float, default=engine.max_inventory, help="base units")
    parser.add_argument("--maker-fee-bps", type=float, default=1.0, help="per fill; negative: a rebate")
    parser.add_argument("--threshold", type=float, default=2.0, help="oracle: large move = ratio above this")
    parser.add_argument("--horizon-minutes", type=int, default=30, help="oracle: the move's horizon")
    parser.add_argument("--baseline-hours", type=float, default=24.0)
    parser.add_argument("--min-baseline-minutes", type=int, default=120)


def _known_ms(bar: Bar, bar_td: timedelta) -> int:
    return int((bar.time + bar_td).timestamp() * 1000)


def select(
    news: Sequence[NewsRow], windows: Sequence[list[Bar]], bar_td: timedelta, limit: int
) -> tuple[list[list[Bar]], list[NewsRow], int]:
    """Whole windows with news, in time order, while their items add up to at most `limit` (at least one
    window; 0: all); returns them, their items, and how many items fell outside every window."""
    spans = [(_known_ms(w[0], bar_td), _known_ms(w[-1], bar_td)) for w in windows]
    by_window: dict[int, list[NewsRow]] = {}
    outside = 0
    for row in news:
        hit = next((i for i, (a, b) in enumerate(spans) if a <= row.published_ms <= b), None)
        if hit is None:
            outside += 1
        else:
            by_window.setdefault(hit, []).append(row)
    chosen: list[int] = []
    total = 0
    for i in sorted(by_window):
        if limit and chosen and total + len(by_window[i]) > limit:
            break
        chosen.append(i)
        total += len(by_window[i])
    return [windows[i] for i in chosen], [r for i in chosen for r in by_window[i]], outside


def _ms(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "items": 0}
    return {
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "items": len(values),
    }


async def _replay(
    args: argparse.Namespace, rows: list[NewsRow], feed: SeriesFeed, model_url: str, tmp: Path
) -> Replayed:
    policy = TraderPolicy(args.approve, timedelta(seconds=args.approval_delay_s))
    with RedisStack(tmp / "redis", appendonly=False) as server:
        async with ModelClient(model_url, deadline_s=60.0, retries=2) as model:
            return await replay(
                rows, server.url, model, tmp / "data", args.asset, feed, args.judge, policy,
                args.model_deadline_s,
            )  # fmt: skip


def backtest(args: argparse.Namespace, model_url: str) -> dict[str, Any]:
    started = time.perf_counter()
    asset = args.asset.upper()
    args.asset = asset
    news = load_news(args.news, args.author, args.platform, args.news_utc_offset)
    bars = load_bars(args.prices)
    labeller = Labeller(
        load_price_bars(args.prices), args.horizon_minutes, args.baseline_hours, args.min_baseline_minutes
    )
    bar_td = timedelta(milliseconds=labeller.bars.bar_ms)
    windows, rows, outside = select(news, split_windows(bars, bar_td), bar_td, args.limit)
    analysis = AnalysisSettings.load(quoted_assets=(asset,), always_assets=(asset,))
    feed = SeriesFeed({asset: (labeller.bars.known_ms, labeller.bars.close)}, market_window(analysis))

    with tempfile.TemporaryDirectory(prefix="tw-backtest-") as tmp:
        replayed = asyncio.run(_replay(args, rows, feed, model_url, Path(tmp)))
    replay_s = time.perf_counter() - started

    caps = QuotingSettings.load().caps
    engine = EngineConfig(order_size=args.order_size, max_inventory=args.max_inventory)
    book = Book(engine, args.maker_fee_bps)
    ranges = read_ranges(args.prices)
    signals = replayed.signals

    def with_signals(when: datetime) -> QuoteAdjustment:
        return combine(asset, signals, when, caps)

    oracle = Oracle(asset, labeller, args.threshold, build_analyst(analysis, None, feed).policy, caps)
    rows_out = {
        name: simulate(windows, bar_td, book, adjustment_at, labeller.prices, ranges).report()
        for name, adjustment_at in (
            ("static", lambda when: None),
            ("tapewatch", with_signals),
            ("oracle", oracle),
        )
    }
    elapsed = time.perf_counter() - started
    counts = replayed.counts
    base = rows_out["static"]["pnl"]
    hindsight = rows_out["oracle"]["pnl"] - base
    return {
        "backtest": "quoting",
        "news": str(args.news),
        "prices": str(args.prices),
        "asset": asset,
        "rows": rows_out,
        "vs_static": {
            "tapewatch_pnl": round(rows_out["tapewatch"]["pnl"] - base, 4),
            "oracle_pnl": round(hindsight, 4),
            "tapewatch_share_of_oracle": round((rows_out["tapewatch"]["pnl"] - base) / hindsight, 4)
            if hindsight
            else None,
        },
        "scope": {
            "news_in_file": len(news),
            "news_outside_price_windows": outside,
            "news_replayed": len(rows),
            "windows": len(windows),
            "windows_in_file": len(split_windows(bars, bar_td)),
            "first_bar": windows[0][0].time.isoformat() if windows else None,
            "last_bar": windows[-1][-1].time.isoformat() if windows else None,
        },
        "pipeline": {
            "judge": args.judge,
            "model": replayed.model_label,
            "items": counts["items"],
            "duplicates_at_ingest": counts["duplicates_at_ingest"],
            "rejected_by_ingest": counts["rejected_by_ingest"],
            "rejected_by_dedup": counts["rejected_by_dedup"],
            "echoes": counts["echoes"],
            "stories": counts["stories"],
            "judged_by": dict(replayed.judged_by),
            "materiality": dict(replayed.materiality),
            "signals": counts["signals"],
            "approved": counts["approved"],
            "left_to_expire": counts["left_to_expire"],
            "expired_before_decision": counts["expired_before_decision"],
            "ingest_to_pending": _ms(replayed.latency_ms["pending"]),
            "ingest_to_analysed_routine": _ms(replayed.latency_ms["analysed"]),
        },
        "trader": {"approves": f"{args.approve} and above", "delay_s": args.approval_delay_s},
        "signals": replayed.decisions[:100],
        "oracle": {
            "widened_bars": oracle.widened,
            "large_move": f"|{args.horizon_minutes}-min log move| > {args.threshold:g} x the trailing "
            f"{args.baseline_hours:g} h median (eval impact's label)",
        },
        "model": {
            "engine": "quoting.engine.MarketMaker (Avellaneda-Stoikov), EngineConfig defaults "
            f"(base spread ~{2 / EngineConfig().arrival_decay * 10_000:.0f} bps)",
            "requote": "once per bar, at each close (known at bar time + bar); a mid-bar signal acts at the "
            "next close",
            "fills": "a resting quote fills in full when the next bar trades through it (strictly); "
            + (
                "bars have high/low"
                if ranges
                else "close-only bars: the bar's range is [min, max] of the two closes"
            )
            + "; no volume, no fill; queue position ignored; fills at the quote's price",
            "maker_fee_bps": args.maker_fee_bps,
            "order_size": args.order_size,
            "max_inventory": args.max_inventory,
            "windows": "cut at gaps over two bars; each starts flat and is marked at its last close",
            "units": "pnl, fees, adverse_selection, *_notional in quote currency; order size and "
            "max_inventory in base units; *_bps over traded notional",
            "caps": {
                "max_widening_bps": caps.max_widening_bps,
                "max_vol_multiplier": caps.max_vol_multiplier,
                "max_skew_bps": caps.max_skew_bps,
            },
        },
        "replay_s": round(replay_s, 1),
        "elapsed_s": round(elapsed, 1),
        "machine": machine(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("tapewatch").setLevel(logging.ERROR)  # one rules-fallback line per item otherwise
    logging.getLogger("tapewatch.streams").setLevel(logging.CRITICAL)  # dedup's rejections: counted
    if args.model_server:
        return backtest(args, args.model_server)
    from services.model_server.process import ModelServerProcess

    with (
        tempfile.TemporaryDirectory(prefix="tw-backtest-model-") as tmp,
        ModelServerProcess(Path(tmp)) as server,
    ):
        return backtest(args, server.grpc_url)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tapewatch backtest", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output too)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
