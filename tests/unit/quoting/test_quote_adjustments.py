import math
from datetime import UTC, datetime, timedelta

import pytest

from quoting.adjustments import (
    Caps,
    QuoteAdjustment,
    QuoteOverride,
    SignalAdjustment,
    combine,
    decay_steps,
)
from quoting.avellaneda_stoikov import QuotingParams, quote

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CAPS = Caps(max_widening_bps=50.0, max_vol_multiplier=3.0, max_skew_bps=30.0)


def sec(n: float) -> timedelta:
    return timedelta(seconds=n)


def signal(
    widening=10.0,
    skew=0.0,
    mult=1.0,
    *,
    sid="s1",
    asset="BTC",
    start=T0,
    horizon=600.0,
    decay="linear",
    half_life=None,
):
    return SignalAdjustment(sid, asset, widening, skew, mult, start, sec(horizon), decay, half_life)


def at(signals, seconds=0.0, **kwargs):
    return combine("BTC", signals, T0 + sec(seconds), CAPS, **kwargs)


def sides(adjustment):
    return (
        adjustment.spread_multiplier,
        adjustment.bid_widening_bps,
        adjustment.ask_widening_bps,
        adjustment.skew_bps,
    )


# decay


def test_linear_decay_reaches_zero_at_the_horizon_end():
    s = signal(horizon=600)
    assert s.remaining(T0) == 1.0
    assert s.remaining(T0 + sec(150)) == pytest.approx(0.75)
    assert s.remaining(T0 + sec(300)) == pytest.approx(0.5)
    assert s.remaining(T0 + sec(599)) == pytest.approx(1 / 600)
    assert s.remaining(T0 + sec(600)) == 0.0
    assert s.remaining(T0 + sec(5000)) == 0.0
    assert s.remaining(T0 - sec(1)) == 0.0  # not started yet


def test_exponential_decay_halves_at_the_half_life_and_ends_at_the_horizon():
    s = signal(horizon=600, decay="exponential", half_life=sec(120))
    assert s.remaining(T0) == 1.0
    assert s.remaining(T0 + sec(120)) == pytest.approx(0.5)
    assert s.remaining(T0 + sec(240)) == pytest.approx(0.25)
    assert s.remaining(T0 + sec(599)) == pytest.approx(0.5 ** (599 / 120))
    assert s.remaining(T0 + sec(600)) == 0.0


def test_decay_scales_widening_skew_and_the_multiplier_excess():
    # halfway through a linear 600 s signal: w = 5, skew = -2, mult = 1 + (2 - 1) * 0.5
    adjustment = at([signal(widening=10, skew=-4, mult=2.0)], 300)
    assert sides(adjustment) == pytest.approx((1.5, 5 + 2, 5, -2))
    assert adjustment.valid_until == T0 + sec(600)
    assert adjustment.signal_ids == ("s1",)


@pytest.mark.parametrize(
    ("decay", "half_life"), [("cosine", None), ("exponential", None), ("exponential", sec(0))]
)
def test_signal_rejects_unknown_decay(decay, half_life):
    with pytest.raises(ValueError):
        signal(decay=decay, half_life=half_life)


# direction


def test_bearish_skew_widens_the_bid_more():
    # w = 10, skew = -4: bid = 10 + min(4, 10) = 14, ask = 10
    assert sides(at([signal(widening=10, skew=-4)])) == pytest.approx((1.0, 14.0, 10.0, -4.0))


def test_bullish_is_the_mirror_image():
    assert sides(at([signal(widening=10, skew=4)])) == pytest.approx((1.0, 10.0, 14.0, 4.0))


def test_extra_widening_is_at_most_the_widening():
    # w = 2, skew = -10: bid = 2 + min(10, 2) = 4
    assert sides(at([signal(widening=2, skew=-10)])) == pytest.approx((1.0, 4.0, 2.0, -10.0))
    # a skew-only signal is a pure shift
    assert sides(at([signal(widening=0, skew=-10)])) == pytest.approx((1.0, 0.0, 0.0, -10.0))


def test_bearish_quotes_shift_down_and_the_bid_moves_further():
    params = QuotingParams(risk_aversion=0.5, arrival_decay=0.5, horizon_s=2.0)
    base = quote(params, 100.0, 0.0, 1.0)
    # w = 5, skew = -20: bid moves -20 - 10 bps = -0.3, ask moves -20 + 5 bps = -0.15
    bearish = quote(params, 100.0, 0.0, 1.0, at([signal(widening=5, skew=-20)]))
    assert bearish.bid - base.bid == pytest.approx(-0.30)
    assert bearish.ask - base.ask == pytest.approx(-0.15)
    bullish = quote(params, 100.0, 0.0, 1.0, at([signal(widening=5, skew=20)]))
    assert bullish.bid - base.bid == pytest.approx(0.15)
    assert bullish.ask - base.ask == pytest.approx(0.30)


# combination


def test_three_signals_combine_by_max_per_side_and_strongest_skew_each_way():
    signals = [
        signal(widening=10, skew=-6, mult=1.5, sid="a", horizon=600),  # bid 16, ask 10
        signal(widening=4, skew=-12, mult=2.5, sid="b", horizon=1200),  # bid 8, ask 4
        signal(widening=8, skew=5, mult=1.2, sid="c", horizon=300),  # bid 8, ask 13
    ]
    adjustment = at(signals)
    # bid max(16, 8, 8), ask max(10, 4, 13), mult max(1.5, 2.5, 1.2), skew -12 (strongest bearish) + 5
    assert sides(adjustment) == pytest.approx((2.5, 16.0, 13.0, -7.0))
    assert adjustment.signal_ids == ("a", "b", "c")
    assert adjustment.valid_until == T0 + sec(1200)


def test_same_direction_signals_do_not_stack():
    two = [signal(widening=10, skew=-6, sid="a"), signal(widening=10, skew=-6, sid="b")]
    assert sides(at(two)) == sides(at(two[:1]))


def test_two_signals_under_different_decay():
    signals = [
        signal(widening=20, sid="fast", decay="exponential", half_life=sec(60), horizon=600),
        signal(widening=8, sid="slow", horizon=600),
    ]
    # at 120 s: fast = 20 * 0.25 = 5, slow = 8 * (1 - 120 / 600) = 6.4; the slow one now sets the width
    assert at(signals, 120).bid_widening_bps == pytest.approx(6.4)
    assert at(signals, 30).bid_widening_bps == pytest.approx(20 * 0.5**0.5)


def test_other_assets_and_future_or_finished_signals_are_ignored():
    signals = [
        signal(asset="ETH", sid="eth"),
        signal(start=T0 + sec(60), sid="later"),
        signal(start=T0 - sec(600)),
    ]
    adjustment = at(signals)
    assert adjustment.is_base and adjustment.signal_ids == () and adjustment.valid_until is None


# caps


@pytest.mark.parametrize(
    ("widening", "skew", "mult", "expected"),
    [
        (1e9, -1e9, 1e9, (3.0, 50.0, 50.0, -30.0)),
        (math.inf, math.inf, math.inf, (3.0, 50.0, 50.0, 30.0)),
        (math.nan, math.nan, math.nan, (1.0, 0.0, 0.0, 0.0)),
        (-5.0, 0.0, -2.0, (1.0, 0.0, 0.0, 0.0)),
        (-math.inf, -math.inf, -math.inf, (1.0, 0.0, 0.0, -30.0)),
        (50.0, -30.0, 0.5, (1.0, 50.0, 50.0, -30.0)),  # bid 50 + 30 is capped after the split
    ],
)
def test_caps_clamp_absurd_inputs(widening, skew, mult, expected):
    adjustment = at([signal(widening=widening, skew=skew, mult=mult)])
    assert sides(adjustment) == pytest.approx(expected)
    assert all(math.isfinite(v) for v in sides(adjustment))


def test_an_absurd_signal_does_not_wipe_out_an_opposite_one():
    # inputs are capped first: -1e9 -> -30, then -30 + 10
    assert at([signal(skew=-1e9, sid="a"), signal(skew=10, sid="b")]).skew_bps == pytest.approx(-20.0)


@pytest.mark.parametrize(("w", "m", "s"), [(math.nan, 3, 30), (50, 0.5, 30), (-1, 3, 30), (50, 3, math.inf)])
def test_caps_reject_nonsense(w, m, s):
    with pytest.raises(ValueError):
        Caps(max_widening_bps=w, max_vol_multiplier=m, max_skew_bps=s)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"skew_bps": math.nan},
        {"spread_multiplier": 0.5},
        {"bid_widening_bps": -1.0},
        {"ask_widening_bps": math.inf},
    ],
)
def test_quote_adjustment_never_carries_nan_or_negative(kwargs):
    with pytest.raises(ValueError):
        QuoteAdjustment(asset="BTC", **kwargs)


# kill switch and override


def test_kill_switch_returns_to_base():
    override = QuoteOverride(asset="BTC", until=T0 + sec(60), spread_multiplier=2.0, bid_widening_bps=5.0)
    adjustment = at([signal(widening=20, skew=-10, mult=2.0)], kill_switch=True, override=override)
    assert adjustment.is_base and adjustment.kill_switch
    assert (adjustment.signal_ids, adjustment.override_active, adjustment.valid_until) == ((), False, None)
    assert at([signal(widening=20)], kill_switch=False).bid_widening_bps == 20.0


def test_override_wins_over_signals_while_active():
    override = QuoteOverride(
        asset="BTC",
        until=T0 + sec(120),
        spread_multiplier=1.2,
        bid_widening_bps=2.0,
        ask_widening_bps=3.0,
        skew_bps=1.0,
    )
    signals = [signal(widening=20, skew=-10, mult=2.5, horizon=600)]
    during = at(signals, 60, override=override)
    assert sides(during) == pytest.approx((1.2, 2.0, 3.0, 1.0))
    assert during.override_active and during.signal_ids == ("s1",)
    assert during.valid_until == T0 + sec(600)
    after = at(signals, 120, override=override)
    assert not after.override_active
    assert after.bid_widening_bps == pytest.approx(20 * 0.8 + 10 * 0.8)  # the signal is back, decayed


def test_override_is_capped_too():
    override = QuoteOverride(
        asset="BTC", until=T0 + sec(60), spread_multiplier=math.nan, bid_widening_bps=1e9, skew_bps=-1e9
    )
    assert sides(at([], override=override)) == pytest.approx((1.0, 50.0, 0.0, -30.0))


def test_override_for_another_asset_is_an_error():
    with pytest.raises(ValueError):
        at([], override=QuoteOverride(asset="ETH", until=T0 + sec(60)))


# decay steps


def test_linear_decay_steps_every_half_bp():
    # 10 bps over 600 s falls 0.5 bps every 30 s; the 20th step, at the end, is base
    steps = decay_steps("BTC", [signal(widening=10, horizon=600)], T0, CAPS)
    assert [s.as_of for s in steps] == [T0 + sec(30 * k) for k in range(1, 21)]
    assert [s.bid_widening_bps for s in steps[:3]] == pytest.approx([9.5, 9.0, 8.5])
    assert steps[-1].is_base and steps[-1].signal_ids == ()


def test_exponential_decay_steps_are_on_time_and_end_at_base():
    signals = [signal(widening=8, decay="exponential", half_life=sec(60), horizon=600)]
    steps = decay_steps("BTC", signals, T0, CAPS)
    # first step when 8 * 0.5 ** (t / 60) <= 7.5: t >= 60 * log2(8 / 7.5) = 5.59 s -> 6 s on the 1 s grid
    assert steps[0].as_of == T0 + sec(6)
    assert steps[-1].as_of == T0 + sec(600) and steps[-1].is_base
    previous = at(signals)
    for step in steps[:-1]:
        assert previous.bid_widening_bps - step.bid_widening_bps >= 0.5 - 1e-9
        one_second_earlier = combine("BTC", signals, step.as_of - sec(1), CAPS)
        assert previous.bid_widening_bps - one_second_earlier.bid_widening_bps < 0.5
        previous = step
    # later steps are further apart
    assert steps[-2].as_of - steps[-3].as_of > steps[1].as_of - steps[0].as_of


def test_decay_steps_jump_over_an_override_and_include_a_future_start():
    override = QuoteOverride(asset="BTC", until=T0 + sec(900), bid_widening_bps=1.0)
    steps = decay_steps("BTC", [signal(horizon=600)], T0, CAPS, override=override)
    assert [s.as_of for s in steps] == [T0 + sec(600), T0 + sec(900)]
    assert steps[0].override_active and steps[0].signal_ids == () and steps[0].bid_widening_bps == 1.0
    assert steps[1].is_base and not steps[1].override_active

    later = decay_steps("BTC", [signal(widening=10, start=T0 + sec(60), horizon=600)], T0, CAPS)
    assert later[0].as_of == T0 + sec(60) and later[0].bid_widening_bps == 10.0


def test_no_decay_steps_under_the_kill_switch_or_at_base():
    assert decay_steps("BTC", [signal()], T0, CAPS, kill_switch=True) == []
    assert decay_steps("BTC", [signal(asset="ETH")], T0, CAPS) == []
