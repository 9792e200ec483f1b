"""A trader's edits: within the caps they replace the proposal for their asset; beyond, refused by name."""

from __future__ import annotations

import math

import pytest

from services.approval.caps import EditCaps, EditRefused, apply_edits
from tapewatch.approval.v1 import approval_pb2

CAPS = EditCaps(max_widening_bps=40, max_skew_bps=20, max_horizon_minutes=90, max_vol_multiplier=2.5)
BTC = approval_pb2.AssetAdjustment(
    asset="BTC", widening_bps=12, skew_bps=-6, vol_multiplier=1.4, horizon_minutes=30
)
ETH = approval_pb2.AssetAdjustment(
    asset="ETH", widening_bps=10, skew_bps=-6, vol_multiplier=1.4, horizon_minutes=30
)


def edit(**kw: object) -> approval_pb2.AssetAdjustment:
    values = {"asset": "BTC", "widening_bps": 20, "skew_bps": -6, "horizon_minutes": 30, **kw}
    return approval_pb2.AssetAdjustment(**values)  # type: ignore[arg-type]


def test_edit_replaces_its_asset_and_keeps_the_rest() -> None:
    approved, edits = apply_edits([BTC, ETH], [edit(widening_bps=40, skew_bps=20, horizon_minutes=90)], CAPS)
    btc, eth = approved
    assert (btc.widening_bps, btc.skew_bps, btc.horizon_minutes) == (40, 20, 90)
    assert btc.vol_multiplier == 1.4 and btc.direction == BTC.direction  # not edited: as proposed
    assert eth == ETH
    assert edits == [
        {"asset": "BTC", "field": "widening_bps", "proposed": 12, "approved": 40},
        {"asset": "BTC", "field": "skew_bps", "proposed": -6, "approved": 20},
        {"asset": "BTC", "field": "horizon_minutes", "proposed": 30, "approved": 90},
    ]


@pytest.mark.parametrize(
    ("change", "cap"),
    [
        ({"widening_bps": 40.01}, "max_widening_bps"),
        ({"widening_bps": -1}, "max_widening_bps"),
        ({"skew_bps": -20.5}, "max_skew_bps"),
        ({"horizon_minutes": 91}, "max_horizon_minutes"),
        ({"horizon_minutes": 0}, "max_horizon_minutes"),
        ({"vol_multiplier": 2.6}, "max_vol_multiplier"),
        ({"vol_multiplier": 0.5}, "max_vol_multiplier"),
    ],
)
def test_beyond_a_cap_is_refused_naming_it(change: dict[str, float], cap: str) -> None:
    with pytest.raises(EditRefused, match=cap):
        apply_edits([BTC, ETH], [edit(**change)], CAPS)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(EditRefused, match="finite"):
        apply_edits([BTC], [edit(widening_bps=value)], CAPS)


def test_unknown_repeated_or_missing_edits_are_refused() -> None:
    with pytest.raises(EditRefused, match="'SOL' is not in this signal"):
        apply_edits([BTC, ETH], [edit(asset="SOL")], CAPS)
    with pytest.raises(EditRefused, match="twice"):
        apply_edits([BTC, ETH], [edit(), edit()], CAPS)
    with pytest.raises(EditRefused, match="at least one"):
        apply_edits([BTC, ETH], [], CAPS)
