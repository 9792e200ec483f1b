import math
from datetime import UTC, datetime, timedelta

import pytest

from quoting.adjustments import QuoteAdjustment, QuoteOverride
from services.quoting_adapter.convert import (
    BadInput,
    DecayPolicy,
    adjustment_from_json,
    adjustment_json,
    asset_name,
    override_from_json,
    override_json,
    params_from_proto,
    params_proto,
    signal_adjustments,
    started_at,
    timestamp,
)
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LINEAR = DecayPolicy("linear", 0.2, timedelta(hours=24))
EXPONENTIAL = DecayPolicy("exponential", 0.25, timedelta(hours=24))
BEARISH, BULLISH = analysis_pb2.DIRECTION_BEARISH, analysis_pb2.DIRECTION_BULLISH
UNCLEAR, UNSPECIFIED = analysis_pb2.DIRECTION_UNCLEAR, analysis_pb2.DIRECTION_UNSPECIFIED


def signal(*adjustments: approval_pb2.AssetAdjustment, sid: str = "s1") -> approval_pb2.Signal:
    return approval_pb2.Signal(
        id=sid,
        state=approval_pb2.SIGNAL_STATE_APPROVED,
        adjustments=list(adjustments),
        decision=approval_pb2.Decision(action=approval_pb2.ACTION_APPROVE, decided_at=timestamp(T0)),
    )


def adj(asset="BTC", widening=10.0, skew=4.0, mult=1.5, horizon=30, direction=BEARISH):
    return approval_pb2.AssetAdjustment(
        asset=asset,
        widening_bps=widening,
        skew_bps=skew,
        vol_multiplier=mult,
        horizon_minutes=horizon,
        direction=direction,
    )


def test_an_approved_signal_becomes_one_adjustment_per_asset():
    approved = signal(adj("btc"), adj(" Eth ", 5, 2, 0.0, 60, BULLISH))
    [btc, eth] = signal_adjustments(approved, T0, EXPONENTIAL)
    assert (btc.asset, btc.widening_bps, btc.skew_bps, btc.vol_multiplier) == ("BTC", 10.0, -4.0, 1.5)
    assert (btc.started_at, btc.horizon, btc.decay, btc.half_life) == (
        T0,
        timedelta(minutes=30),
        "exponential",
        timedelta(minutes=7.5),
    )
    assert (eth.asset, eth.skew_bps, eth.vol_multiplier, eth.horizon) == ("ETH", 2.0, 1.0, timedelta(hours=1))
    assert {btc.signal_id, eth.signal_id} == {"s1"}


@pytest.mark.parametrize(
    ("direction", "skew", "want"),
    [
        (BEARISH, 4.0, -4.0),
        (BEARISH, -4.0, -4.0),
        (BULLISH, -4.0, 4.0),
        (UNCLEAR, 4.0, 0.0),
        (UNSPECIFIED, -3, -3),
    ],
)
def test_the_skew_sign_follows_the_approved_direction(direction, skew, want):
    [a] = signal_adjustments(signal(adj(skew=skew, direction=direction)), T0, LINEAR)
    assert a.skew_bps == want and a.half_life is None


def test_a_modified_approval_applies_every_approved_asset():
    # as the approval service sends it: adjustments as approved, `modified` only the edited ones
    s = signal(adj("BTC", widening=3, horizon=5), adj("ETH", widening=10))
    s.decision.action = approval_pb2.ACTION_MODIFY
    s.decision.modified.append(adj("BTC", widening=3, horizon=5))
    btc, eth = signal_adjustments(s, T0, LINEAR)
    assert (btc.widening_bps, btc.horizon) == (3.0, timedelta(minutes=5))
    assert (eth.asset, eth.widening_bps) == ("ETH", 10.0)


BAD = {
    "not approved": (
        lambda s: setattr(s, "state", approval_pb2.SIGNAL_STATE_REJECTED),
        "REJECTED, not APPROVED",
    ),
    "no id": (lambda s: setattr(s, "id", ""), "no id"),
    "no adjustments": (lambda s: s.ClearField("adjustments"), "no adjustments"),
    "zero horizon": (lambda s: setattr(s.adjustments[0], "horizon_minutes", 0), "horizon_minutes"),
    "horizon over the max": (lambda s: setattr(s.adjustments[0], "horizon_minutes", 24 * 60 + 1), "1..1440"),
    "negative widening": (lambda s: setattr(s.adjustments[0], "widening_bps", -1), "widening_bps"),
    "NaN skew": (lambda s: setattr(s.adjustments[0], "skew_bps", math.nan), "finite"),
    "multiplier below 1": (lambda s: setattr(s.adjustments[0], "vol_multiplier", 0.5), "vol_multiplier"),
    "empty asset": (lambda s: setattr(s.adjustments[0], "asset", " "), "asset is empty"),
    "same asset twice": (lambda s: s.adjustments.append(adj("btc")), "twice"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_signals_are_refused_with_a_reason(case):
    s = signal(adj())
    change, words = BAD[case]
    change(s)
    with pytest.raises(BadInput, match=words):
        signal_adjustments(s, T0, LINEAR)


def test_full_strength_from_the_approval_time_whenever_it_is_read():
    s = signal(adj())
    later = T0 + timedelta(minutes=7)
    assert started_at(s, published=T0 + timedelta(seconds=1), now=later) == T0
    s.decision.ClearField("decided_at")
    assert started_at(s, published=T0 + timedelta(seconds=1), now=later) == T0 + timedelta(seconds=1)
    # an approval clock ahead of ours never starts a signal in the future
    s.decision.decided_at.CopyFrom(timestamp(later))
    assert started_at(s, published=T0, now=T0) == T0


@pytest.mark.parametrize("raw", ["", "  ", "BTC/USDT", "x" * 33, "ÉTH"])
def test_asset_names_must_be_tickers(raw):
    with pytest.raises(BadInput):
        asset_name(raw)


def test_asset_names_are_canonical():
    assert asset_name(" doge ") == "DOGE" and asset_name("1000pepe") == "1000PEPE"


def test_redis_documents_round_trip():
    for policy in (LINEAR, EXPONENTIAL):
        [a] = signal_adjustments(signal(adj()), T0, policy)
        assert adjustment_from_json(adjustment_json(a, ends_ms=1, story_id="x")) == a
    o = QuoteOverride("BTC", T0, 1.5, 2.0, 3.0, -1.0, "desk view")
    assert override_from_json(override_json(o, requested_by="rm")) == o


def test_params_round_trip_through_the_proto():
    a = QuoteAdjustment(
        "BTC", 1.5, 12.0, 8.0, -4.0, T0 + timedelta(minutes=5), ("s1", "s2"), False, False, T0
    )
    assert params_from_proto(params_proto(a)) == a
    base = QuoteAdjustment("ETH", as_of=T0)
    msg = params_proto(base)
    assert not msg.HasField("valid_until") and params_from_proto(msg) == base
