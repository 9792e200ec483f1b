"""The backtest's fill model, accounting and markouts against hand-computed values; the oracle's size; the
window selection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from quoting.adjustments import Caps, QuoteAdjustment
from quoting.engine import Bar, EngineConfig
from services.analysis.market import PriceBars
from services.analysis.policy import Policy
from services.backtest.__main__ import select
from services.backtest.market import Book, read_ranges, simulate, split_windows
from services.backtest.oracle import Oracle, oracle_signal
from services.evals.impact import Labeller, NewsRow

MINUTE = timedelta(minutes=1)
T0 = datetime(2021, 2, 4, 8, 0, tzinfo=UTC)
# Spread fixed by the floor (100 bps, bid and ask 50 bps from the mid), no inventory term to speak of.
FLAT = EngineConfig(risk_aversion=1e-9, arrival_decay=1e9, spread_floor_bps=100.0, order_size=2.0,
                    max_inventory=10.0, fallback_sigma_rel=0.0)  # fmt: skip


def bars(*closes: float, volume: float = 1.0, start: datetime = T0) -> list[Bar]:
    return [Bar(start + i * MINUTE, c, volume) for i, c in enumerate(closes)]


def prices_of(series: list[Bar]):
    times = np.array([int(b.time.timestamp() * 1000) for b in series], dtype=np.int64)
    labeller = Labeller(PriceBars(times, np.array([b.close for b in series]), 60_000), 30, 24, 1)
    return labeller.prices


def run(series: list[Bar], book: Book, adjustment_at=lambda t: None, ranges=None):
    return simulate(split_windows(series, MINUTE), MINUTE, book, adjustment_at, prices_of(series), ranges)


def test_a_quote_fills_when_the_next_close_trades_through_it_at_its_own_price() -> None:
    series = bars(100.0, 99.0, 100.2, 100.2)
    ledger = run(series, Book(FLAT, maker_fee_bps=10.0))
    # bar 1 closes at 99 < bid 99.5: bought 2 at 99.5; bar 2 closes at 100.2 > ask 99.495: sold 2 at 99.495
    assert [(f.side, round(f.price, 9), f.size) for f in ledger.fills] == [(1, 99.5, 2.0), (-1, 99.495, 2.0)]
    fees = (99.5 + 99.495) * 2 * 10 / 10_000
    report = ledger.report()
    assert report["fees"] == pytest.approx(fees, abs=1e-4)
    assert report["pnl"] == pytest.approx((99.495 - 99.5) * 2 - fees, abs=1e-4)
    assert report["fills"] == 2 and report["buys"] == 1 and report["max_inventory"] == 2.0
    # markouts: the buy (known at bar 1's close) 1 minute on is marked at 100.2: a gain of 0.7 a unit;
    # the sell 1 minute on at 100.2 too (a close at most two bars old): a loss of 0.705 a unit; 5 and 30
    # minutes on are past the window
    assert report["adverse_selection"]["1m"] == pytest.approx((99.5 - 100.2) * 2 + (100.2 - 99.495) * 2)
    assert report["fills_without_markout"] == {"1m": 0, "5m": 2, "30m": 2}


def test_a_touch_or_a_bar_without_volume_fills_nothing() -> None:
    touch = run(bars(100.0, 99.5, 99.5), Book(FLAT))
    assert touch.fills == []
    quiet = bars(100.0, 90.0, 110.0, volume=0.0)
    assert run(quiet, Book(FLAT)).fills == []


def test_bars_with_high_and_low_fill_both_sides_in_one_bar(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    csv.write_text(
        "time,open,high,low,close,volume\n2021-02-04 08:00:00,100,100,100,100,5\n"
        "2021-02-04 08:01:00,100,101,99,100,5\n"
    )
    ranges = read_ranges(csv)
    assert ranges == {T0: (100.0, 100.0), T0 + MINUTE: (99.0, 101.0)}
    ledger = run(bars(100.0, 100.0), Book(FLAT, maker_fee_bps=0.0), ranges=ranges)
    assert sorted(f.side for f in ledger.fills) == [-1, 1]
    assert ledger.report()["pnl"] == pytest.approx(100.5 * 2 - 99.5 * 2)  # the spread, earned once
    close_only = tmp_path / "close.csv"
    close_only.write_text("time,close,volume\n2021-02-04 08:00:00,100,5\n")
    assert read_ranges(close_only) is None


def test_an_adjustment_in_force_widens_the_quote_and_saves_the_fill() -> None:
    series = bars(100.0, 99.0, 99.0)
    widened = QuoteAdjustment(asset="DOGE", bid_widening_bps=100.0)  # bid 100 bps lower: 98.5
    ledger = run(series, Book(FLAT), adjustment_at=lambda t: widened if t == T0 + MINUTE else None)
    assert ledger.fills == [] and ledger.report()["adjusted_bars"] == 1
    assert len(run(series, Book(FLAT)).fills) == 1


def test_windows_start_flat_and_end_marked_at_their_last_close() -> None:
    first = bars(100.0, 99.0, 99.0)  # buys 2 at 99.5, marked at 99
    second = bars(50.0, 50.0, start=T0 + timedelta(hours=5))  # months later, in the file: no trades
    windows = split_windows([*first, *second], MINUTE)
    assert [len(w) for w in windows] == [3, 2]
    ledger = run([*first, *second], Book(FLAT, maker_fee_bps=0.0))
    assert ledger.report()["pnl"] == pytest.approx((99.0 - 99.5) * 2)  # not marked at 50


def test_the_oracle_carries_the_policys_largest_adjustment_in_the_realised_direction() -> None:
    policy = Policy(Caps(50.0, 3.0, 25.0))
    down = oracle_signal("DOGE", "bearish", policy, 30)
    assert (down.widening_bps, down.vol_multiplier, down.horizon) == (49.5, 2.98, timedelta(minutes=30))
    assert down.skew_bps == pytest.approx(-24.8, abs=0.06)
    # flat for three hours, then a 5% drop: only the quotes within 30 minutes before it are widened
    series = bars(*([1.0, 1.001] * 90), *([0.95] * 40))
    times = np.array([int(b.time.timestamp() * 1000) for b in series], dtype=np.int64)
    labeller = Labeller(PriceBars(times, np.array([b.close for b in series]), 60_000), 30, 24, 60)
    oracle = Oracle("DOGE", labeller, 2.0, policy, Caps(100.0, 4.0, 50.0))
    widened = [b.time + MINUTE for b in series if oracle(b.time + MINUTE) is not None]
    drop_known = series[180].time + MINUTE
    assert widened and all(drop_known - timedelta(minutes=30) <= t < drop_known for t in widened)
    adjustment = oracle(widened[0])
    assert adjustment is not None and adjustment.skew_bps < 0 < adjustment.bid_widening_bps


def test_select_takes_whole_windows_with_news_up_to_the_limit() -> None:
    windows = [bars(1.0, 1.0, 1.0, start=T0 + timedelta(days=d)) for d in range(3)]

    def at(day: int, minute: int) -> NewsRow:
        ms = int((T0 + timedelta(days=day, minutes=minute)).timestamp() * 1000)
        return NewsRow(ms, "elonmusk", "x", "Doge")

    news = [at(0, 1), at(0, 2), at(1, 1), at(2, 2), at(2, 3), at(5, 0)]
    chosen, rows, outside = select(news, windows, MINUTE, limit=3)
    assert (len(chosen), len(rows), outside) == (2, 3, 1)
    assert select(news, windows, MINUTE, limit=1)[1] == news[:2]  # at least one whole window
    assert len(select(news, windows, MINUTE, limit=0)[1]) == 5
