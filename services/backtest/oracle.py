"""The hindsight row: widen exactly when the realised move over the next 30 minutes is large.

"Large" is `tapewatch eval impact`'s label (services/evals/impact.py Labeller): |ln(P(t+30m) / P(t))| over
the median 30-minute move of the trailing 24 h is above the threshold (2). While it is, the quotes carry
what the analysis policy would recommend for a `high` story with quoting probability 0.99 and full
confidence in the realised direction (widening, vol multiplier and skew at their policy maxima), at full
strength, through the quoting adapter's own conversion, caps and combine(). It knows the future move, its
size and its direction, so it bounds what perfectly timed signals of the policy's size could do; it is
not an optimum over every possible widening.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from quoting.adjustments import Caps, QuoteAdjustment, SignalAdjustment, combine
from services.analysis.judgement import AssetView, Judgement
from services.analysis.policy import Policy
from services.evals.impact import Labeller
from services.quoting_adapter.convert import DecayPolicy, signal_adjustments
from tapewatch.approval.v1 import approval_pb2

ORACLE_P = 0.99  # the policy's clamp on a probability


def oracle_signal(asset: str, direction: str, policy: Policy, horizon_minutes: int) -> SignalAdjustment:
    """The policy's adjustment for a `high` story in this direction, as the adapter stores it."""
    judgement = Judgement(
        materiality="high",
        event_type="other",
        assets={asset: AssetView(direction=direction, vol_burst_probability=ORACLE_P)},  # type: ignore[arg-type]
        urgency="immediate",
        horizon_minutes=horizon_minutes,
        confidence=1.0,
        rationale="oracle: the realised move",
    )
    signal = approval_pb2.Signal(
        id=f"oracle-{direction}",
        state=approval_pb2.SIGNAL_STATE_APPROVED,
        adjustments=policy.adjustments(judgement, {asset: ORACLE_P}),
    )
    decay = DecayPolicy("linear", 1.0, timedelta(minutes=policy.max_horizon_minutes))
    [adjustment] = signal_adjustments(signal, datetime.fromtimestamp(0, UTC), decay)
    return adjustment


class Oracle:
    """adjustment_at(t) for the hindsight row; counts the bars it widened."""

    def __init__(self, asset: str, labeller: Labeller, threshold: float, policy: Policy, caps: Caps) -> None:
        self.asset = asset
        self.labeller = labeller
        self.threshold = threshold
        self.caps = caps
        horizon = labeller.horizon_ms // 60_000
        self.signals = {d: oracle_signal(asset, d, policy, horizon) for d in ("bullish", "bearish")}
        self.widened = 0

    def __call__(self, when: datetime) -> QuoteAdjustment | None:
        ms = int(when.timestamp() * 1000)
        label, _ = self.labeller.label(ms, self.threshold)
        if label is None or not label.moved:
            return None
        now, later = self.labeller.prices(np.array([ms, ms + self.labeller.horizon_ms], dtype=np.int64))
        signal = replace(self.signals["bullish" if later > now else "bearish"], started_at=when)
        self.widened += 1
        return combine(self.asset, [signal], when, self.caps)
