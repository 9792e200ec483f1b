"""From judgement and quoting probability to recommended adjustments per asset, clamped by the caps.

Per asset, with p its quoting probability and share = {routine: 0, notable: 0.5, high: 1}[materiality]:
    widening_bps   = max_widening_bps * share * p
    skew_bps       = ±max_skew_bps * p * confidence   (+ bullish, - bearish, 0 unclear)
    vol_multiplier = 1 + (max_vol_multiplier - 1) * share * p
    horizon        = the judgement's horizon within [min_horizon, max_horizon]
then every number goes through quoting.adjustments.Caps (NaN -> 0 / 1, clamped into the caps). The model
chooses only enums and probabilities (clamped to [0.01, 0.99]); whatever a story says, no number leaves its
cap, and the result is a recommendation that a trader approves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from quoting.adjustments import Caps
from services.analysis.judgement import Judgement
from services.analysis.market import clamp_probability
from tapewatch.analysis.v1 import analysis_pb2
from tapewatch.approval.v1 import approval_pb2

MATERIALITY_SHARE = {"routine": 0.0, "notable": 0.5, "high": 1.0}
DIRECTION_SIGN = {"bullish": 1.0, "bearish": -1.0, "unclear": 0.0}


@dataclass(frozen=True)
class Policy:
    caps: Caps
    min_horizon_minutes: int = 5
    max_horizon_minutes: int = 120

    def is_material(self, judgement: Judgement) -> bool:
        return judgement.materiality != "routine"

    def horizon(self, minutes: int) -> int:
        return min(max(int(minutes), self.min_horizon_minutes), self.max_horizon_minutes)

    def adjustments(
        self, judgement: Judgement, quoting_probability: Mapping[str, float]
    ) -> list[approval_pb2.AssetAdjustment]:
        share = MATERIALITY_SHARE[judgement.materiality]
        confidence = judgement.confidence if math.isfinite(judgement.confidence) else 0.0
        confidence = min(max(confidence, 0.0), 1.0)
        out = []
        for asset, view in judgement.assets.items():
            p = clamp_probability(quoting_probability.get(asset, 0.0))
            sign = DIRECTION_SIGN[view.direction]
            out.append(
                approval_pb2.AssetAdjustment(
                    asset=asset,
                    widening_bps=self.caps.widening(round(self.caps.max_widening_bps * share * p, 1)),
                    skew_bps=self.caps.skew(round(sign * self.caps.max_skew_bps * p * confidence, 1)),
                    vol_multiplier=self.caps.multiplier(
                        round(1 + (self.caps.max_vol_multiplier - 1) * share * p, 3)
                    ),
                    horizon_minutes=self.horizon(judgement.horizon_minutes),
                    direction=analysis_pb2.Direction.Value(f"DIRECTION_{view.direction.upper()}"),
                    quoting_probability=round(p, 4),
                )
            )
        return out
