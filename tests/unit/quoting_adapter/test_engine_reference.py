import io
import math
from datetime import UTC, datetime, timedelta

import pytest

from quoting.adjustments import QuoteAdjustment
from quoting.engine import EngineConfig, MarketMaker, RealisedVol, quote_step, read_bars

T0 = datetime(2021, 2, 4, 8, 0, tzinfo=UTC)
# g = 2, kappa = 2000, T = 100 s; at mid 100: gamma = 0.02, k = 20.
CONFIG = EngineConfig(
    risk_aversion=2.0,
    arrival_decay=2000.0,
    horizon_s=100.0,
    spread_floor_bps=1.0,
    order_size=5,
    max_inventory=10,
)
SIGMA = 0.1  # price per sqrt(second) at mid 100: sigma_rel = 0.001
# spread = s * (g * sigma_rel^2 * T + (2 / g) * ln(1 + g / kappa)) = 100 * (2e-4 + ln 1.001)
SPREAD = 100 * (2e-4 + math.log(1.001))


def test_quote_step_by_hand():
    # short 2: r = s - q * gamma * sigma^2 * T = 100 + 2 * 0.02 * 0.01 * 100 = 100.04 (leans to buy)
    q = quote_step(CONFIG, 100.0, -2.0, SIGMA, None)
    assert q.bid == pytest.approx(100.04 - SPREAD / 2) and q.ask == pytest.approx(100.04 + SPREAD / 2)
    assert q.size == 5
    assert SPREAD == pytest.approx(0.11995, abs=1e-5)


def test_the_model_is_scale_free_in_the_mid():
    cheap = quote_step(CONFIG, 0.25, 0.0, 0.25 * 0.001, None)
    dear = quote_step(CONFIG, 100.0, 0.0, SIGMA, None)
    assert (cheap.ask - cheap.bid) / 0.25 == pytest.approx((dear.ask - dear.bid) / 100.0)


def test_the_adjustment_widens_and_skews_the_quote():
    bearish = QuoteAdjustment(
        "BTC", spread_multiplier=2.0, bid_widening_bps=20, ask_widening_bps=10, skew_bps=-10
    )
    q = quote_step(CONFIG, 100.0, 0.0, SIGMA, bearish)
    # centre 100 - 0.1 (skew); spread doubled; bid 0.2 and ask 0.1 further out
    assert q.bid == pytest.approx(99.9 - SPREAD - 0.2) and q.ask == pytest.approx(99.9 + SPREAD + 0.1)
    killed = QuoteAdjustment("BTC", kill_switch=True)
    assert quote_step(CONFIG, 100.0, 0.0, SIGMA, killed) == quote_step(CONFIG, 100.0, 0.0, SIGMA, None)


@pytest.mark.parametrize(
    ("inventory", "bid", "ask"),
    [(0, True, True), (5, True, True), (7, False, True), (10, False, True), (-10, True, False)],
)
def test_only_the_reducing_side_is_quoted_at_the_inventory_limit(inventory, bid, ask):
    q = quote_step(CONFIG, 100.0, inventory, SIGMA, None)
    assert (q.bid is not None, q.ask is not None) == (bid, ask)


def test_config_is_checked():
    with pytest.raises(ValueError, match="max_inventory"):
        EngineConfig(order_size=10, max_inventory=5)
    with pytest.raises(ValueError, match="risk_aversion"):
        EngineConfig(risk_aversion=0)


def test_realised_vol_per_second_from_uneven_mids():
    vol = RealisedVol(window=3, max_gap_s=600, fallback_sigma_rel=5e-4)
    assert vol.sigma_rel == 5e-4  # nothing in yet
    vol.update(T0, 100.0)
    vol.update(T0 + timedelta(seconds=60), 101.0)
    vol.update(T0 + timedelta(seconds=180), 100.0)
    up, down = math.log(1.01) ** 2 / 60, math.log(100 / 101) ** 2 / 120
    assert vol.sigma_rel == pytest.approx(math.sqrt((up + down) / 2))
    assert vol.sigma(50.0) == pytest.approx(50 * vol.sigma_rel)
    for i in range(5):  # only the last 3 returns count: a flat market
        vol.update(T0 + timedelta(seconds=240 + 60 * i), 100.0)
    assert vol.sigma_rel == 0.0
    vol.update(T0 + timedelta(hours=2), 120.0)  # a gap: start afresh
    assert vol.sigma_rel == 5e-4


def test_market_maker_tracks_inventory_cash_and_marks():
    mm = MarketMaker(CONFIG)
    assert mm.on_mid(T0, 100.0, None).bid is not None
    mm.fill("buy", 99.0, 5)
    mm.fill("buy", 99.5, 5)
    assert mm.on_mid(T0 + timedelta(minutes=1), 100.0, None).bid is None  # at the long limit
    mm.fill("sell", 101.0, 10)
    assert (mm.inventory, mm.cash, mm.fills, mm.mark(100.0)) == (0.0, 17.5, 3, 17.5)
    with pytest.raises(ValueError, match="mid"):
        mm.on_mid(T0, math.nan, None)


def test_bars_from_csv():
    text = "time,close,volume\n2021-02-04 08:00:00,0.0375,1200.5\n2021-02-04 08:01:00+00:00,0.038,\n"
    bars = list(read_bars(io.StringIO(text)))
    assert [(b.time, b.close, b.volume) for b in bars] == [
        (T0, 0.0375, 1200.5),
        (T0 + timedelta(minutes=1), 0.038, 0.0),
    ]
    with pytest.raises(ValueError, match="line 2"):
        list(read_bars(io.StringIO("time,close\nyesterday,1.0\n")))
    with pytest.raises(ValueError, match="line 3: close"):
        list(read_bars(io.StringIO("time,close\n2021-02-04 08:00:00,1\n2021-02-04 08:01:00,-1\n")))
