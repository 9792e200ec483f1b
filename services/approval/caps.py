"""A trader's edits to a proposal (ACTION_MODIFY), checked against the configured caps.

Each edited entry replaces the proposal for its asset: widening, skew and horizon as given, the vol
multiplier as given or (0) as proposed; direction and quoting probability stay as proposed. Assets the
trader did not edit keep the proposal. An edit outside a cap is refused, never clamped: the trader must
see that the number they typed is not the number that would be quoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tapewatch.approval.v1 import approval_pb2


class EditRefused(ValueError):
    pass


@dataclass(frozen=True)
class EditCaps:
    max_widening_bps: float
    max_skew_bps: float
    max_horizon_minutes: int
    max_vol_multiplier: float


def apply_edits(
    proposed: list[approval_pb2.AssetAdjustment],
    modified: list[approval_pb2.AssetAdjustment],
    caps: EditCaps,
) -> tuple[list[approval_pb2.AssetAdjustment], list[dict[str, Any]]]:
    """(the adjustments to approve, the edits as {asset, field, proposed, approved})."""
    if not modified:
        raise EditRefused("ACTION_MODIFY needs at least one modified adjustment")
    by_asset = {a.asset: a for a in proposed}
    edited: dict[str, approval_pb2.AssetAdjustment] = {}
    for m in modified:
        if m.asset not in by_asset:
            raise EditRefused(
                f"asset {m.asset!r} is not in this signal (it has {', '.join(by_asset) or 'none'})"
            )
        if m.asset in edited:
            raise EditRefused(f"asset {m.asset!r} is modified twice")
        _check(m, caps)
        base = by_asset[m.asset]
        new = approval_pb2.AssetAdjustment()
        new.CopyFrom(base)
        new.widening_bps = m.widening_bps
        new.skew_bps = m.skew_bps
        new.horizon_minutes = m.horizon_minutes
        if m.vol_multiplier:
            new.vol_multiplier = m.vol_multiplier
        edited[m.asset] = new
    approved = [edited.get(a.asset, a) for a in proposed]
    edits = [
        {
            "asset": a.asset,
            "field": name,
            "proposed": getattr(a, name),
            "approved": getattr(edited[a.asset], name),
        }
        for a in proposed
        if a.asset in edited
        for name in ("widening_bps", "skew_bps", "horizon_minutes", "vol_multiplier")
        if getattr(a, name) != getattr(edited[a.asset], name)
    ]
    return approved, edits


def _check(m: approval_pb2.AssetAdjustment, caps: EditCaps) -> None:
    numbers = {"widening_bps": m.widening_bps, "skew_bps": m.skew_bps, "vol_multiplier": m.vol_multiplier}
    for name, value in numbers.items():
        if not math.isfinite(value):
            raise EditRefused(f"{m.asset}: {name} must be a finite number, got {value}")
    if not 0 <= m.widening_bps <= caps.max_widening_bps:
        raise EditRefused(
            f"{m.asset}: widening_bps {m.widening_bps:g} is outside 0..{caps.max_widening_bps:g} "
            f"(cap max_widening_bps)"
        )
    if abs(m.skew_bps) > caps.max_skew_bps:
        raise EditRefused(
            f"{m.asset}: skew_bps {m.skew_bps:g} is beyond ±{caps.max_skew_bps:g} (cap max_skew_bps)"
        )
    if not 1 <= m.horizon_minutes <= caps.max_horizon_minutes:
        raise EditRefused(
            f"{m.asset}: horizon_minutes {m.horizon_minutes} is outside 1..{caps.max_horizon_minutes} "
            f"(cap max_horizon_minutes)"
        )
    if m.vol_multiplier and not 1 <= m.vol_multiplier <= caps.max_vol_multiplier:
        raise EditRefused(
            f"{m.asset}: vol_multiplier {m.vol_multiplier:g} is outside 1..{caps.max_vol_multiplier:g} "
            f"(cap max_vol_multiplier)"
        )
