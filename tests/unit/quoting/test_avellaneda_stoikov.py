import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from quoting.adjustments import Caps, QuoteAdjustment, SignalAdjustment, combine
from quoting.avellaneda_stoikov import (
    Quote,
    QuotingParams,
    bps_to_price,
    optimal_spread,
    quote,
    reservation_price,
)

# gamma = k = 0.5, so ln(1 + gamma / k) = ln 2; T = 2 s; sigma = 1 price unit per sqrt(second).
PARAMS = QuotingParams(risk_aversion=0.5, arrival_decay=0.5, horizon_s=2.0, spread_floor_bps=1.0)
LN2 = math.log(2)


def test_reservation_price_by_hand():
    # r = s - q * gamma * sigma^2 * (T - t) = 100 - 2 * 0.5 * 1 * 2 = 98
    assert reservation_price(PARAMS, mid=100.0, inventory=2.0, sigma=1.0) == pytest.approx(98.0)
    # half the horizon left: 100 - 2 * 0.5 * 1 * 1 = 99
    assert reservation_price(PARAMS, 100.0, 2.0, 1.0, time_left_s=1.0) == pytest.approx(99.0)


def test_optimal_spread_by_hand():
    # delta = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k) = 0.5 * 1 * 2 + 4 * ln 2 = 3.7725887
    assert optimal_spread(PARAMS, sigma=1.0) == pytest.approx(1 + 4 * LN2)
    assert optimal_spread(PARAMS, sigma=1.0) == pytest.approx(3.7725887, abs=1e-7)
    # at the end of the horizon only the liquidity term is left: 4 * ln 2
    assert optimal_spread(PARAMS, sigma=1.0, time_left_s=0.0) == pytest.approx(4 * LN2)


def test_time_left_is_clamped_to_the_horizon():
    assert optimal_spread(PARAMS, 1.0, time_left_s=50.0) == optimal_spread(PARAMS, 1.0, time_left_s=2.0)
    assert optimal_spread(PARAMS, 1.0, time_left_s=-5.0) == optimal_spread(PARAMS, 1.0, time_left_s=0.0)


def test_base_quote_by_hand():
    # r = 98, delta / 2 = 1.8862944: bid = 96.1137056, ask = 99.8862944
    bid, ask = quote(PARAMS, mid=100.0, inventory=2.0, sigma=1.0)
    assert bid == pytest.approx(96.1137056, abs=1e-7)
    assert ask == pytest.approx(99.8862944, abs=1e-7)


def test_adjusted_quote_by_hand():
    adjustment = QuoteAdjustment(
        asset="BTC", spread_multiplier=2.0, bid_widening_bps=10.0, ask_widening_bps=5.0, skew_bps=-20.0
    )
    # at mid 100: 10 bps = 0.1, 5 bps = 0.05, -20 bps = -0.2; spread = 3.7725887 * 2, half = 3.7725887
    # bid = 98 - 0.2 - 3.7725887 - 0.1 = 93.9274113;  ask = 98 - 0.2 + 3.7725887 + 0.05 = 101.6225887
    bid, ask = quote(PARAMS, 100.0, 2.0, 1.0, adjustment)
    assert bid == pytest.approx(93.9274113, abs=1e-7)
    assert ask == pytest.approx(101.6225887, abs=1e-7)


def test_bps_conversion():
    assert bps_to_price(25.0, 40_000.0) == 100.0
    assert bps_to_price(1.0, 10_000.0) == 1.0


@pytest.mark.parametrize("inventory", [1.0, 5.0])
def test_long_inventory_lowers_both_quotes_and_short_raises_them(inventory):
    flat = quote(PARAMS, 100.0, 0.0, 1.0)
    long = quote(PARAMS, 100.0, inventory, 1.0)
    short = quote(PARAMS, 100.0, -inventory, 1.0)
    assert (
        reservation_price(PARAMS, 100.0, inventory, 1.0)
        < 100.0
        < reservation_price(PARAMS, 100.0, -inventory, 1.0)
    )
    assert long.bid < flat.bid < short.bid
    assert long.ask < flat.ask < short.ask
    # inventory moves the centre, not the width
    assert long.ask - long.bid == pytest.approx(flat.ask - flat.bid)


def test_spread_floor_binds_and_multiplier_scales_it():
    # delta = 0 + (2 / 0.01) * ln(1 + 0.01 / 100) = 200 * 0.000099995 = 0.0199990; floor 10 bps of 100 = 0.1
    params = QuotingParams(risk_aversion=0.01, arrival_decay=100.0, horizon_s=1.0, spread_floor_bps=10.0)
    assert optimal_spread(params, sigma=0.0) == pytest.approx(0.0199990, abs=1e-7)
    assert quote(params, 100.0, 0.0, 0.0) == pytest.approx((99.95, 100.05))
    tripled = QuoteAdjustment(asset="BTC", spread_multiplier=3.0)
    assert quote(params, 100.0, 0.0, 0.0, tripled) == pytest.approx((99.85, 100.15))


def test_tick_rounding_is_outward():
    params = QuotingParams(risk_aversion=0.5, arrival_decay=0.5, horizon_s=2.0, tick_size=0.01)
    # 96.1137056 rounds down, 99.8862944 rounds up
    assert quote(params, 100.0, 2.0, 1.0) == Quote(96.11, 99.89)
    # already on the tick: unchanged (no float noise pushing a tick out)
    on_tick = QuotingParams(
        risk_aversion=0.01, arrival_decay=100.0, horizon_s=1.0, spread_floor_bps=10.0, tick_size=0.05
    )
    assert quote(on_tick, 100.0, 0.0, 0.0) == Quote(99.95, 100.05)
    # floor 2000 bps of 7 = 1.4: 6.3 and 7.7 are on the tick, but 6.3 / 0.1 = 62.99999999999999 in floats
    wide = QuotingParams(
        risk_aversion=0.01, arrival_decay=1e6, horizon_s=1.0, spread_floor_bps=2000.0, tick_size=0.1
    )
    assert quote(wide, 7.0, 0.0, 0.0) == Quote(6.3, 7.7)


def test_kill_switched_adjustment_quotes_at_base():
    killed = QuoteAdjustment(asset="BTC", spread_multiplier=3.0, skew_bps=-30.0, kill_switch=True)
    assert quote(PARAMS, 100.0, 2.0, 1.0, killed) == quote(PARAMS, 100.0, 2.0, 1.0)


def test_never_crossed_under_extreme_inputs():
    caps = Caps(max_widening_bps=1e4, max_vol_multiplier=100.0, max_skew_bps=1e5)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    absurd = [(1e9, -1e9, 1e9), (0.0, 1e9, 1.0), (math.nan, math.nan, math.nan), (-5.0, -math.inf, -3.0)]
    adjustments = [QuoteAdjustment(asset="BTC")] + [
        combine(
            "BTC", [SignalAdjustment("s", "BTC", w, s, m, start, timedelta(hours=1), "linear")], start, caps
        )
        for w, s, m in absurd
    ]
    for adjustment, inventory, sigma, tick in itertools.product(
        adjustments, [-1e4, 0.0, 1e4], [0.0, 1.0, 50.0], [None, 0.01, 5.0]
    ):
        params = QuotingParams(
            risk_aversion=1e-6, arrival_decay=1e3, horizon_s=60.0, spread_floor_bps=0.5, tick_size=tick
        )
        bid, ask = quote(params, 100.0, inventory, sigma, adjustment)
        assert math.isfinite(bid) and math.isfinite(ask)
        assert ask - bid >= max(bps_to_price(0.5, 100.0), tick or 0.0) * (1 - 1e-9), (adjustment, tick)


@pytest.mark.parametrize(
    ("mid", "inventory", "sigma"),
    [
        (math.nan, 0.0, 1.0),
        (0.0, 0.0, 1.0),
        (-1.0, 0.0, 1.0),
        (100.0, math.inf, 1.0),
        (100.0, 0.0, math.nan),
        (100.0, 0.0, -1.0),
    ],
)
def test_no_quote_on_broken_market_state(mid, inventory, sigma):
    with pytest.raises(ValueError):
        quote(PARAMS, mid, inventory, sigma)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"risk_aversion": 0.0},
        {"arrival_decay": math.nan},
        {"horizon_s": -1.0},
        {"spread_floor_bps": 0.0},
        {"tick_size": 0.0},
    ],
)
def test_params_reject_nonsense(kwargs):
    base = {"risk_aversion": 0.5, "arrival_decay": 0.5, "horizon_s": 2.0}
    with pytest.raises(ValueError):
        QuotingParams(**(base | kwargs))
