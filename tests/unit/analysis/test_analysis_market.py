"""Market state from mids, and the probabilities built on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.analysis.market import (
    MarketState,
    MarketWindow,
    ProbabilityModel,
    SeriesFeed,
    state_from_mids,
)

MIN = 60_000
NOW = 1_700_000_000_000  # 2023-11-14 22:13 UTC


def zigzag(minutes: int, bps: float, start_ms: int = NOW - 6 * 3600_000) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(start_ms, start_ms + minutes * MIN, MIN, dtype=np.int64)
    mids = 100 * np.exp(bps / 1e4 * (np.arange(times.size) % 2))
    return times, mids


def test_calm_series_has_a_ratio_near_one() -> None:
    t, m = zigzag(360, 2)
    s = state_from_mids("BTC", t, m, NOW, MarketWindow())
    assert s.enough_history and 0.8 < s.vol_ratio < 1.25 and s.mid == pytest.approx(m[-1])


def test_a_recent_burst_raises_the_vol_ratio() -> None:
    t, m = zigzag(360, 2)
    m = m.copy()
    m[-20:] = 100 * np.exp(0.004 * (np.arange(20) % 2))
    s = state_from_mids("BTC", t, m, NOW, MarketWindow())
    assert s.vol_ratio > 5


def test_nothing_after_now_is_used() -> None:
    t, m = zigzag(360, 2)
    later_t = np.concatenate([t, t[-1] + MIN * np.arange(1, 31)])
    later_m = np.concatenate([m, 100 * np.exp(0.05 * (np.arange(30) % 2))])  # a crash after now
    assert state_from_mids("BTC", later_t, later_m, int(t[-1]), MarketWindow()) == state_from_mids(
        "BTC", t, m, int(t[-1]), MarketWindow()
    )


def test_short_history_is_neutral() -> None:
    t, m = zigzag(60, 50, start_ms=NOW - 60 * MIN)
    s = state_from_mids("BTC", t, m, NOW, MarketWindow(min_history_minutes=120))
    assert not s.enough_history and s.vol_ratio == 1.0 and s.move_ratio == 1.0


async def test_an_unknown_asset_is_neutral() -> None:
    s = await SeriesFeed({}).state("PEPE", NOW)
    assert s.vol_ratio == 1.0 and s.mid is None


def state(vol: float, move: float = 1.0, hour: int = 3) -> MarketState:
    return MarketState("BTC", NOW, 1.0, 0.0, 0.0, vol, move, hour, 600, True)


def test_probabilities_rise_with_market_state_and_news() -> None:
    p = ProbabilityModel()
    assert p.market(state(1.0)) == pytest.approx(0.15, abs=1e-9)
    assert p.market(state(3.0)) > p.market(state(1.0)) > p.market(state(0.3))
    assert p.market(state(1.0, hour=15)) > p.market(state(1.0, hour=3))
    calm = p.market(state(1.0))
    assert p.quoting(calm, 0.15) == pytest.approx(calm)  # a routine-looking story leaves the market prior
    assert p.quoting(calm, 0.9) > calm > p.quoting(calm, 0.02)
    assert p.news(0.3, 100) > p.news(0.3, 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -5.0, 7.0])
def test_probabilities_stay_in_bounds_whatever_comes_in(bad: float) -> None:
    p = ProbabilityModel()
    for value in (p.news(bad, 10**9), p.quoting(0.5, p.news(bad, 0)), p.market(state(20.0, 20.0, 15))):
        assert 0.01 <= value <= 0.99 and math.isfinite(value)
