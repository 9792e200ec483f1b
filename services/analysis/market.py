"""Market state and the probability that drives quoting.

State of an asset at `now` from its mids up to `now` (never later), on a one-minute grid (the last mid at
or before each minute), over the last `recent_minutes` against the trailing baseline (every window of the
same length ending in the last `baseline_hours`, or what the feed holds, at least `min_history_minutes`;
with less, both ratios are 1, neutral, and `enough_history` is False):
- vol_ratio: realised volatility (root of the summed squared one-minute log returns) / its baseline median;
- move_ratio: the absolute log return over the window / its baseline median (the label's own units);
and the hour of day (UTC).

Probabilities, in log-odds (defaults in AnalysisSettings; the evaluation reports how they rank):
    market  = logit(market_base_rate) + vol_ratio_weight * ln(vol_ratio) + move_ratio_weight * ln(move_ratio)
              + active_hours_log_odds [within active hours]
    news    = logit(vol_burst_probability) + echo_log_odds * ln(1 + echoes)
    quoting = market + news_weight * (news - logit(news_base_rate))
so market state is the prior, and the judgement moves it by how far it departs from a routine story.

Mid sources: the quoting adapter's Redis stream `tw:market:<ASSET>` (fields `mid`, `time_ms`; see
services/quoting_adapter/service.py), read incrementally and kept as one-minute closes; or a price series
replayed from a CSV (eval, backtest).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import redis.asyncio as aioredis

MINUTE_MS = 60_000
P_MIN, P_MAX = 0.01, 0.99
RATIO_MIN, RATIO_MAX = 0.05, 20.0


@dataclass(frozen=True)
class MarketState:
    asset: str
    as_of_ms: int
    mid: float | None
    realised_vol: float  # over recent_minutes, as a log-return fraction
    baseline_vol: float
    vol_ratio: float  # realised / baseline, 1.0 when unknown
    move_ratio: float  # |return over the window| / baseline, 1.0 when unknown
    hour_utc: int
    history_minutes: int
    enough_history: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "mid": self.mid,
            "realised_vol": round(self.realised_vol, 6),
            "baseline_vol": round(self.baseline_vol, 6),
            "vol_ratio": round(self.vol_ratio, 3),
            "move_ratio": round(self.move_ratio, 3),
            "hour_utc": self.hour_utc,
            "history_minutes": self.history_minutes,
            "enough_history": self.enough_history,
        }


@dataclass(frozen=True)
class MarketWindow:
    recent_minutes: int = 30
    baseline_hours: float = 24.0
    min_history_minutes: int = 120

    @property
    def span_ms(self) -> int:
        return int(self.baseline_hours * 3600_000) + (self.recent_minutes + 1) * MINUTE_MS


def neutral_state(asset: str, now_ms: int) -> MarketState:
    return MarketState(asset, now_ms, None, 0.0, 0.0, 1.0, 1.0, _hour(now_ms), 0, False)


def state_from_mids(
    asset: str,
    times_ms: npt.NDArray[np.int64],
    mids: npt.NDArray[np.float64],
    now_ms: int,
    window: MarketWindow,
) -> MarketState:
    """`times_ms` ascending; only mids at or before now_ms are used."""
    grid = np.arange(now_ms - window.span_ms, now_ms + 1, MINUTE_MS, dtype=np.int64)
    idx = np.searchsorted(times_ms, grid, side="right") - 1
    valid = idx >= 0
    if not valid.any():
        return neutral_state(asset, now_ms)
    log_prices = np.log(mids[idx[valid]])
    mid = float(mids[idx[valid]][-1])
    returns = np.diff(log_prices)
    history = int(returns.size)
    w = window.recent_minutes
    if history < max(w, window.min_history_minutes):
        state = neutral_state(asset, now_ms)
        return MarketState(asset, now_ms, mid, 0.0, 0.0, 1.0, 1.0, state.hour_utc, history, False)
    sq = np.concatenate(([0.0], np.cumsum(returns * returns)))
    rolling_vol = np.sqrt(np.maximum(sq[w:] - sq[:-w], 0.0))  # every full window, the last ends at now
    rolling_move = np.abs(log_prices[w:] - log_prices[:-w])
    recent, baseline = float(rolling_vol[-1]), float(np.median(rolling_vol))
    return MarketState(
        asset, now_ms, mid, recent, baseline, _ratio(recent, baseline),
        _ratio(float(rolling_move[-1]), float(np.median(rolling_move))), _hour(now_ms), history, True,
    )  # fmt: skip


def _ratio(recent: float, baseline: float) -> float:
    ratio = recent / baseline if baseline > 0 else (RATIO_MAX if recent > 0 else 1.0)
    return min(max(ratio, RATIO_MIN), RATIO_MAX)


def _hour(ms: int) -> int:
    return datetime.fromtimestamp(ms / 1000, UTC).hour


def logit(p: float) -> float:
    p = min(max(p, P_MIN), P_MAX)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def clamp_probability(p: float) -> float:
    return P_MIN if not math.isfinite(p) else min(max(p, P_MIN), P_MAX)


@dataclass(frozen=True)
class ProbabilityModel:
    market_base_rate: float = 0.15
    vol_ratio_weight: float = 0.6
    move_ratio_weight: float = 0.6
    active_hours_utc: tuple[int, int] = (13, 21)
    active_hours_log_odds: float = 0.2
    news_weight: float = 0.6
    news_base_rate: float = 0.15
    echo_log_odds: float = 0.1

    def market(self, state: MarketState) -> float:
        start, end = self.active_hours_utc
        active = start <= state.hour_utc < end if start <= end else not end <= state.hour_utc < start
        x = logit(self.market_base_rate) + self.vol_ratio_weight * math.log(state.vol_ratio)
        x += self.move_ratio_weight * math.log(state.move_ratio)
        return clamp_probability(sigmoid(x + (self.active_hours_log_odds if active else 0.0)))

    def news(self, vol_burst_probability: float, echoes: int) -> float:
        x = logit(clamp_probability(vol_burst_probability)) + self.echo_log_odds * math.log1p(max(echoes, 0))
        return clamp_probability(sigmoid(x))

    def quoting(self, p_market: float, p_news: float) -> float:
        x = logit(p_market) + self.news_weight * (logit(p_news) - logit(self.news_base_rate))
        return clamp_probability(sigmoid(x))


class MarketFeed(Protocol):
    async def state(self, asset: str, now_ms: int) -> MarketState: ...


@dataclass
class SeriesFeed:
    """Mid series in memory, per asset (CSV replay, tests)."""

    series: Mapping[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]
    window: MarketWindow = field(default_factory=MarketWindow)

    async def state(self, asset: str, now_ms: int) -> MarketState:
        if asset not in self.series:
            return neutral_state(asset, now_ms)
        times, mids = self.series[asset]
        return state_from_mids(asset, times, mids, now_ms, self.window)


@dataclass
class PriceBars:
    """One asset's bars from a CSV: `time` (ISO 8601, UTC when no zone, or epoch s / ms) and `close`; `open`,
    `high`, `low`, `volume` optional (unused). A bar's close is known at `time + bar`, so `known_ms` is
    what a live desk would have seen."""

    times_ms: npt.NDArray[np.int64]
    close: npt.NDArray[np.float64]
    bar_ms: int

    @property
    def known_ms(self) -> npt.NDArray[np.int64]:
        return self.times_ms + self.bar_ms

    def price_at(self, ms: int) -> float | None:
        """The last close known at `ms`."""
        i = int(np.searchsorted(self.known_ms, ms, side="right")) - 1
        return float(self.close[i]) if i >= 0 else None


def parse_time_ms(raw: str) -> int:
    raw = raw.strip()
    if raw.replace(".", "", 1).isdigit():
        value = float(raw)
        return int(value if value > 1e11 else value * 1000)
    when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def load_price_bars(path: Path) -> PriceBars:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "time" not in columns or not ({"close", "mid"} & set(columns)):
            raise ValueError(f"{path}: needs columns time and close (has {sorted(columns)})")
        price_col = columns.get("close") or columns["mid"]
        rows = [(parse_time_ms(r[columns["time"]]), float(r[price_col])) for r in reader if r[price_col]]
    rows.sort()
    times = np.array([t for t, _ in rows], dtype=np.int64)
    close = np.array([c for _, c in rows], dtype=np.float64)
    if times.size < 2:
        raise ValueError(f"{path}: fewer than two bars")
    bar_ms = int(np.median(np.diff(times)))
    return PriceBars(times, close, max(bar_ms, 1))


class RedisMarketFeed:
    """Mids from `tw:market:<ASSET>`, read incrementally (only entries newer than the last read) and kept as
    one-minute closes for the baseline window."""

    def __init__(self, redis: aioredis.Redis, prefix: str, window: MarketWindow, page: int = 5000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.window = window
        self.page = page
        self._last_id: dict[str, str] = {}
        self._closes: dict[str, dict[int, tuple[int, float]]] = {}  # minute -> (time_ms, mid)

    async def state(self, asset: str, now_ms: int) -> MarketState:
        closes = await self._refresh(asset.upper(), now_ms)
        if not closes:
            return neutral_state(asset, now_ms)
        points = sorted(closes.values())
        times = np.array([t for t, _ in points], dtype=np.int64)
        mids = np.array([m for _, m in points], dtype=np.float64)
        return state_from_mids(asset, times, mids, now_ms, self.window)

    async def _refresh(self, asset: str, now_ms: int) -> dict[int, tuple[int, float]]:
        key = self.prefix + asset
        closes = self._closes.setdefault(asset, {})
        oldest = now_ms - self.window.span_ms
        low = f"({self._last_id[asset]}" if asset in self._last_id else f"{max(oldest, 0)}-0"
        high = "+"
        newest: str | None = None
        while True:
            entries = await self.redis.xrevrange(key, max=high, min=low, count=self.page)
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                newest = newest or eid
                try:
                    mid = float(fields[b"mid"])
                    t_ms = int(fields.get(b"time_ms") or eid.split("-", 1)[0])
                except (KeyError, ValueError):
                    continue
                if not (math.isfinite(mid) and mid > 0):
                    continue
                minute = t_ms // MINUTE_MS
                if minute not in closes or closes[minute][0] < t_ms:
                    closes[minute] = (t_ms, mid)
            if len(entries) < self.page:
                break
            high = f"({entries[-1][0].decode() if isinstance(entries[-1][0], bytes) else entries[-1][0]}"
        if newest:
            self._last_id[asset] = newest
        for minute in [m for m in closes if m * MINUTE_MS < oldest - MINUTE_MS]:
            del closes[minute]
        return closes
