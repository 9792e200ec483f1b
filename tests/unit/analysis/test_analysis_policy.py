"""The policy: judgement and quoting probability in, adjustments out, never past the caps."""

from __future__ import annotations

import itertools

import pytest

from quoting.adjustments import Caps
from services.analysis.judgement import DIRECTIONS, MATERIALITIES, AssetView, Judgement
from services.analysis.policy import Policy
from tapewatch.analysis.v1 import analysis_pb2

POLICY = Policy(Caps(max_widening_bps=40, max_vol_multiplier=2.5, max_skew_bps=15), 5, 90)


def judgement(
    materiality: str, direction: str = "bearish", p: float = 0.9, horizon: int = 30, conf: float = 1.0
):
    return Judgement.model_construct(
        materiality=materiality,
        event_type="other",
        assets={"BTC": AssetView.model_construct(direction=direction, vol_burst_probability=p)},
        urgency="immediate",
        horizon_minutes=horizon,
        confidence=conf,
        rationale="",
    )


def test_high_bearish_story_widens_and_skews_down() -> None:
    [a] = POLICY.adjustments(judgement("high"), {"BTC": 0.8})
    assert a.widening_bps == 32.0 and a.skew_bps == -12.0 and a.vol_multiplier == pytest.approx(2.2)
    assert a.direction == analysis_pb2.DIRECTION_BEARISH and a.horizon_minutes == 30
    [b] = POLICY.adjustments(judgement("notable", "bullish"), {"BTC": 0.8})
    assert b.widening_bps == 16.0 and b.skew_bps == 12.0
    [c] = POLICY.adjustments(judgement("high", "unclear"), {"BTC": 0.8})
    assert c.skew_bps == 0.0


def test_routine_stories_are_not_material() -> None:
    assert not POLICY.is_material(judgement("routine"))
    assert POLICY.is_material(judgement("notable")) and POLICY.is_material(judgement("high"))


def test_no_number_ever_leaves_its_cap() -> None:
    values = itertools.product(
        MATERIALITIES, DIRECTIONS, [0.0, 0.99, 1.0, 5.0, 1e9, -3.0, float("nan"), float("inf")],
        [-10, 0, 30, 100_000], [-1.0, 1.0, 1e9, float("nan")],
    )  # fmt: skip
    for materiality, direction, p, horizon, conf in values:
        for a in POLICY.adjustments(judgement(materiality, direction, p, horizon, conf), {"BTC": p}):
            assert 0 <= a.widening_bps <= 40
            assert -15 <= a.skew_bps <= 15
            assert 1 <= a.vol_multiplier <= 2.5
            assert 5 <= a.horizon_minutes <= 90
            assert 0.01 <= a.quoting_probability <= 0.99
