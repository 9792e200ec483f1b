"""Does the analysis predict post-news moves? News items against one asset's price bars.

Inputs (columns by header, case-insensitive):
- --news: the NEWS format `published_at` (ISO 8601, UTC), `author`, `platform`, `text`; also read directly:
  ../shared/data/musk_tweets_2010_2022.csv (`Datetime`, `Text`: author elonmusk, platform x),
  musk_crypto_tweets_curated.csv (`Date` d/m/Y, `Time` h:mm:ss AM/PM, `Tweet`; local times, shifted by
  --news-utc-offset, default +01:00, the offset the DOGE windows were cut with) and
  trump_truth_social_2025.csv (`Created`, `Text`: realDonaldTrump, truth_social).
- --prices: `time`, `open`, `high`, `low`, `close`, `volume` for one asset at a fixed bar size; only `time`
  and `close` are needed (doge_usdt_1m_musk_windows.csv has time, close, volume). A bar's close counts
  as known at time + bar, and a price older than two bars is a gap, never carried across.

Label per item at t: |ln(P(t+30m) / P(t))| divided by the median of |ln(P(s) / P(s-30m))| over the trailing
24 h (or the history the file holds before t, at least --min-baseline-minutes); moved = ratio > 2. Items
without prices at t and t+30m, or with too short a history, are skipped and counted.

Scores, all computed without looking past t: the quoting probability Tapewatch would use (judgement and
market state), the market-state-only probability, the news-only probability (model judgement and echoes),
and the rules-only news probability (the fallback judge) as a reference. The analysis runs through the
same code as the service, with the asset forced into every judgement; --model-server HOST:PORT uses a
running model server, otherwise one is started (the default CPU model), and --rules-only skips the model.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from services.analysis.analyst import Analyst
from services.analysis.assets import BY_SYMBOL
from services.analysis.judgement import MATERIALITIES
from services.analysis.market import (
    MarketState,
    MarketWindow,
    PriceBars,
    SeriesFeed,
    load_price_bars,
    logit,
    parse_time_ms,
)
from services.analysis.prompt import load_prompt
from services.analysis.rules import judge_by_rules
from services.analysis.service import build_analyst
from services.analysis.settings import AnalysisSettings
from services.bench.machine import machine, percentile
from services.ingest.normalize import platform_from_name
from services.model_client import ModelClient
from tapewatch.news.v1 import news_pb2

MINUTE_MS = 60_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--news", type=Path, required=True, help="news CSV (see the formats above)")
    parser.add_argument("--prices", type=Path, required=True, help="price bars CSV of one asset")
    parser.add_argument("--asset", default="DOGE", help="the asset the prices are for (default DOGE)")
    parser.add_argument("--author", help="author for news files without one")
    parser.add_argument("--platform", help="platform for news files without one (x, truth_social, ...)")
    parser.add_argument("--news-utc-offset", default="+01:00", help="for the curated Musk file's local times")
    parser.add_argument("--limit", type=int, help="evaluate at most N labelled items (the first N in time)")
    parser.add_argument("--model-server", help="host:port of a running model server")
    parser.add_argument("--rules-only", action="store_true", help="no model: the rules fallback judges")
    parser.add_argument("--horizon-minutes", type=int, default=30)
    parser.add_argument("--threshold", type=float, default=2.0, help="moved = ratio above this")
    parser.add_argument("--baseline-hours", type=float, default=24.0)
    parser.add_argument("--min-baseline-minutes", type=int, default=120)


@dataclass(frozen=True)
class NewsRow:
    published_ms: int
    author: str
    platform: str
    text: str


def _utc_ms(raw: str) -> int:
    return parse_time_ms(raw)


def load_news(
    path: Path, author: str | None = None, platform: str | None = None, utc_offset: str = "+01:00"
) -> list[NewsRow]:
    """The NEWS format, or one of the shared files by its columns (module docstring)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        rows = list(reader)
    out: list[NewsRow] = []
    if {"published_at", "text"} <= set(cols):
        for r in rows:
            out.append(
                NewsRow(
                    _utc_ms(r[cols["published_at"]]),
                    (r.get(cols.get("author", ""), "") or author or "unknown").strip(),
                    (r.get(cols.get("platform", ""), "") or platform or "x").strip(),
                    r[cols["text"]],
                )
            )
    elif {"datetime", "text"} <= set(cols):  # musk_tweets_2010_2022.csv
        out = [
            NewsRow(_utc_ms(r[cols["datetime"]]), author or "elonmusk", platform or "x", r[cols["text"]])
            for r in rows
        ]
    elif {"date", "time", "tweet"} <= set(cols):  # musk_crypto_tweets_curated.csv
        tz = timezone(datetime.strptime(utc_offset, "%z").utcoffset() or timedelta(0))
        for r in rows:
            local = datetime.strptime(f"{r[cols['date']]} {r[cols['time']]}", "%d/%m/%Y %I:%M:%S %p")
            ms = int(local.replace(tzinfo=tz).timestamp() * 1000)
            out.append(NewsRow(ms, author or "elonmusk", platform or "x", r[cols["tweet"]]))
    elif {"created", "text"} <= set(cols):  # trump_truth_social_2025.csv
        out = [
            NewsRow(
                _utc_ms(r[cols["created"]]),
                author or "realDonaldTrump",
                platform or "truth_social",
                r[cols["text"]],
            )
            for r in rows
        ]
    else:
        raise ValueError(
            f"{path}: unknown news columns {sorted(cols)}; expected published_at, author, platform, text"
        )
    return sorted((r for r in out if r.text.strip()), key=lambda r: r.published_ms)


@dataclass(frozen=True)
class Label:
    ratio: float
    moved: bool
    future_abs_return: float
    baseline: float
    baseline_minutes: int


class Labeller:
    """The realised move after t against the trailing baseline; None when the bars do not cover it."""

    def __init__(
        self, bars: PriceBars, horizon_minutes: int, baseline_hours: float, min_baseline_minutes: int
    ) -> None:
        self.bars = bars
        self.horizon_ms = horizon_minutes * MINUTE_MS
        self.baseline_ms = int(baseline_hours * 3600_000)
        self.min_baseline = min_baseline_minutes
        self.stale_ms = 2 * bars.bar_ms

    def prices(self, ms: np.ndarray) -> np.ndarray:
        """Close known at each time, NaN where the last known close is older than two bars."""
        known = self.bars.known_ms
        i = np.searchsorted(known, ms, side="right") - 1
        ok = (i >= 0) & (ms - known[np.maximum(i, 0)] <= self.stale_ms)
        return np.where(ok, self.bars.close[np.maximum(i, 0)], np.nan)

    def label(self, t_ms: int, threshold: float) -> tuple[Label | None, str]:
        p0, p1 = self.prices(np.array([t_ms, t_ms + self.horizon_ms]))
        if np.isnan(p0) or np.isnan(p1):
            return None, "no prices at t or t+horizon"
        steps = np.arange(t_ms - self.baseline_ms + self.horizon_ms, t_ms + 1, self.bars.bar_ms)
        now, before = self.prices(steps), self.prices(steps - self.horizon_ms)
        ok = ~(np.isnan(now) | np.isnan(before))
        if ok.sum() < self.min_baseline:
            return None, "baseline history too short"
        baseline = float(np.median(np.abs(np.log(now[ok] / before[ok]))))
        future = abs(float(np.log(p1 / p0)))
        ratio = future / baseline if baseline > 0 else (float("inf") if future > 0 else 0.0)
        return Label(ratio, ratio > threshold, future, baseline, int(ok.sum())), ""


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None with a single class."""
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = np.asarray(scores)[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = float(ranks[np.asarray(labels, dtype=bool)].sum())
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def precision_top(scores: list[float], labels: list[bool], share: float = 0.1) -> float | None:
    if not scores:
        return None
    k = max(1, round(len(scores) * share))
    top = np.argsort(-np.asarray(scores), kind="mergesort")[:k]
    return float(np.mean(np.asarray(labels)[top]))


def bootstrap_delta(
    a: list[float], b: list[float], labels: list[bool], rounds: int = 1000
) -> list[float] | None:
    """95% interval of AUC(a) - AUC(b), resampling items."""
    rng = random.Random(7)
    n = len(labels)
    deltas = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        la = [labels[i] for i in idx]
        x, y = auc([a[i] for i in idx], la), auc([b[i] for i in idx], la)
        if x is not None and y is not None:
            deltas.append(x - y)
    if len(deltas) < rounds // 2:
        return None
    deltas.sort()
    return [round(deltas[int(0.025 * len(deltas))], 4), round(deltas[int(0.975 * len(deltas)) - 1], 4)]


def _features(state: MarketState, p_news: float) -> list[float]:
    """Market state (log vol ratio, log move ratio, active hours) then the news log-odds."""
    active = float(13 <= state.hour_utc < 21)
    return [math.log(state.vol_ratio), math.log(state.move_ratio), active, logit(p_news)]


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, steps: int = 25) -> np.ndarray:
    """L2-regularised logistic regression by Newton steps; x without the intercept column."""
    xb = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(xb.shape[1])
    penalty = np.eye(xb.shape[1]) * ridge
    penalty[0, 0] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + penalty @ w
        hess = xb.T @ (xb * (p * (1 - p))[:, None]) + penalty
        w -= np.linalg.solve(hess, grad)
    return w


def cross_validated_auc(x: np.ndarray, labels: list[bool], folds: int = 5) -> float | None:
    """AUC of out-of-fold predictions, folds as contiguous blocks in time (no fitting on the future's
    neighbours of a test item)."""
    n = len(labels)
    if n < 2 * folds:
        return None
    y = np.asarray(labels, dtype=float)
    scores = np.zeros(n)
    for k in range(folds):
        test = np.zeros(n, dtype=bool)
        test[k * n // folds : (k + 1) * n // folds] = True
        if len(set(y[~test])) < 2:
            return None
        w = fit_logistic(x[~test], y[~test])
        scores[test] = np.hstack([np.ones((int(test.sum()), 1)), x[test]]) @ w
    return auc(list(scores), labels)


def _median_int(values: list[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


async def evaluate(args: argparse.Namespace, model_url: str | None) -> dict[str, Any]:
    asset = args.asset.upper()
    if asset not in BY_SYMBOL:
        raise SystemExit(f"unknown asset {asset}")
    news = load_news(args.news, args.author, args.platform, args.news_utc_offset)
    bars = load_price_bars(args.prices)
    labeller = Labeller(bars, args.horizon_minutes, args.baseline_hours, args.min_baseline_minutes)
    labelled: list[tuple[NewsRow, Label]] = []
    skipped: Counter[str] = Counter()
    for row in news:
        label, why = labeller.label(row.published_ms, args.threshold)
        if label is None:
            skipped[why] += 1
        else:
            labelled.append((row, label))
    if args.limit:
        labelled = labelled[: args.limit]
    settings = AnalysisSettings.load(always_assets=(asset,), model_deadline_s=60.0)
    window = MarketWindow(settings.recent_minutes, args.baseline_hours, args.min_baseline_minutes)
    feed = SeriesFeed({asset: (bars.known_ms, bars.close)}, window)
    model = ModelClient(model_url, deadline_s=60.0, retries=2) if model_url else None
    analyst: Analyst = build_analyst(settings, model, feed)
    rows: list[dict[str, Any]] = []
    try:
        for news_row, label in labelled:
            item = news_pb2.NewsItem(
                id=f"ev_{news_row.published_ms}",
                source=news_row.platform,
                platform=platform_from_name(news_row.platform),
                author=news_row.author,
                text=news_row.text,
            )
            item.published_at.FromMilliseconds(news_row.published_ms)
            now = datetime.fromtimestamp(news_row.published_ms / 1000, UTC)
            started = time.perf_counter()
            a = await analyst.assess(item, 0, now)
            latency_ms = (time.perf_counter() - started) * 1000
            rules = judge_by_rules(analyst.story_view(item, 0)).assets[asset].vol_burst_probability
            rows.append(
                {
                    "moved": label.moved,
                    "quoting": a.p_quoting[asset],
                    "market": a.p_market[asset],
                    "news": a.p_news[asset],
                    "rules": analyst.probabilities.news(rules, 0),
                    "features": _features(a.markets[asset], a.p_news[asset]),
                    "materiality": a.verdict.judgement.materiality,
                    "judged_by": a.verdict.judged_by,
                    "latency_ms": latency_ms,
                }
            )
    finally:
        if model:
            await model.close()
    labels = [r["moved"] for r in rows]
    scores = {k: [r[k] for r in rows] for k in ("quoting", "market", "news", "rules")}
    table = {}
    for m in MATERIALITIES:
        group = [r["moved"] for r in rows if r["materiality"] == m]
        table[m] = {
            "items": len(group),
            "moved": sum(group),
            "moved_rate": _round(statistics.mean(group)) if group else None,
        }
    latencies = [r["latency_ms"] for r in rows]
    x = np.array([r["features"] for r in rows]) if rows else np.zeros((0, 4))
    return {
        "eval": "impact",
        "news": str(args.news),
        "prices": str(args.prices),
        "asset": asset,
        "items": len(rows),
        "skipped": dict(skipped),
        "moved_rate": _round(statistics.mean(labels)) if labels else None,
        "auc": _round(auc(scores["quoting"], labels)),
        "auc_market_state_only": _round(auc(scores["market"], labels)),
        "auc_news_only": _round(auc(scores["news"], labels)),
        "auc_rules_news_only": _round(auc(scores["rules"], labels)),
        "auc_gain_vs_market_ci95": bootstrap_delta(scores["quoting"], scores["market"], labels)
        if rows
        else None,
        "cv_fit": {
            "about": "logistic fits on 5 time-blocked folds: what the inputs hold, whatever the set weights",
            "auc_market_state": _round(cross_validated_auc(x[:, :3], labels)),
            "auc_market_state_and_news": _round(cross_validated_auc(x, labels)),
        },
        "precision_top_decile": _round(precision_top(scores["quoting"], labels)),
        "precision_top_decile_market_state_only": _round(precision_top(scores["market"], labels)),
        "latency_p50_ms": _round(percentile(latencies, 50)) if latencies else None,
        "latency_p99_ms": _round(percentile(latencies, 99)) if latencies else None,
        "materiality_vs_moved": table,
        "judged_by": dict(Counter(r["judged_by"] for r in rows)),
        "label": {
            "horizon_minutes": args.horizon_minutes,
            "threshold": args.threshold,
            "baseline": f"median |{args.horizon_minutes}-min log return|, trailing {args.baseline_hours:g} h "
            f"(what the file holds, at least {args.min_baseline_minutes} min)",
            "baseline_minutes_median": _median_int([lab.baseline_minutes for _, lab in labelled]),
        },
        "model": "rules only" if model_url is None else settings.model_label,
        "prompt_version": load_prompt(settings.prompt_version).version,
        "machine": machine(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("tapewatch.analysis").setLevel(logging.ERROR)  # one rules-fallback line per item
    if args.rules_only:
        return asyncio.run(evaluate(args, None))
    if args.model_server:
        return asyncio.run(evaluate(args, args.model_server))
    from services.model_server.process import ModelServerProcess

    with (
        tempfile.TemporaryDirectory(prefix="tw-eval-impact-") as tmp,
        ModelServerProcess(Path(tmp)) as server,
    ):
        return asyncio.run(evaluate(args, server.grpc_url))
