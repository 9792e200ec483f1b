"""How an approved headline signal changes quotes, and how several signals on one asset combine.

A SignalAdjustment is what a trader approved for one asset: a widening per side, a skew and a vol
multiplier, at full strength at ``started_at`` and fading to nothing at ``ends_at = started_at + horizon``.
bps are of the mid.

Decay, ``remaining(now)`` in [0, 1]; 0 before the start and from the end of the horizon on:
    linear:       1 - elapsed / horizon                      (reaches 0 at the horizon end)
    exponential:  0.5 ** (elapsed / half_life)               (halves every half_life, cut to 0 at the end)
widening_bps, skew_bps and (vol_multiplier - 1) all scale by it.

Direction, per signal (w = decayed widening, s = decayed skew): s < 0 is bearish, both quotes shift down
by |s| and the bid, the side the move hits, widens by an extra min(|s|, w):
    bid_widening = w + min(|s|, w),  ask_widening = w
Bullish (s > 0) is the mirror image. The min keeps the size with the widening: a skew-only signal is a
pure shift, and the threatened side never gets more than twice the approved widening.

Combination of the signals active on one asset:
    bid / ask widening:  max over signals, per side (not the sum: echoes of one event must not stack,
                         the largest threat sets the width)
    spread_multiplier:   max over signals of 1 + (vol_multiplier - 1) * remaining
    skew:                strongest bearish + strongest bullish (same-direction signals don't stack, as with
                         the widening; opposite views cancel)

Precedence: kill switch (everything back to base) > risk-manager override (replaces the signals while
active) > signals. Caps bound every input and, last, the result: NaN reads as 0 (widening, skew) or 1
(multiplier); infinities and negatives clamp into [0, max] / [1, max] / [-max, max].
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

DecayKind = Literal["exponential", "linear"]


def _clamp(value: float, low: float, high: float, if_nan: float) -> float:
    value = float(value)
    return if_nan if math.isnan(value) else min(max(value, low), high)


@dataclass(frozen=True)
class Caps:
    """Hard limits, applied to every input and, last, to the combined result."""

    max_widening_bps: float  # per side
    max_vol_multiplier: float
    max_skew_bps: float  # on |skew|

    def __post_init__(self) -> None:
        values = (self.max_widening_bps, self.max_vol_multiplier, self.max_skew_bps)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"caps must be finite: {self}")
        if self.max_widening_bps < 0 or self.max_skew_bps < 0 or self.max_vol_multiplier < 1:
            raise ValueError(f"caps need widening >= 0, skew >= 0, vol multiplier >= 1: {self}")

    def widening(self, bps: float) -> float:
        return _clamp(bps, 0.0, self.max_widening_bps, 0.0)

    def skew(self, bps: float) -> float:
        return _clamp(bps, -self.max_skew_bps, self.max_skew_bps, 0.0)

    def multiplier(self, value: float) -> float:
        return _clamp(value, 1.0, self.max_vol_multiplier, 1.0)


@dataclass(frozen=True)
class SignalAdjustment:
    """One approved signal for one asset, at full strength at started_at."""

    signal_id: str
    asset: str
    widening_bps: float  # per side
    skew_bps: float  # negative: quotes shift down (bearish)
    vol_multiplier: float  # >= 1, scales the model spread
    started_at: datetime
    horizon: timedelta
    decay: DecayKind
    half_life: timedelta | None = None  # required for exponential decay

    def __post_init__(self) -> None:
        if self.decay not in ("exponential", "linear"):
            raise ValueError(f"decay must be 'exponential' or 'linear', got {self.decay!r}")
        if self.decay == "exponential" and (self.half_life is None or self.half_life <= timedelta(0)):
            raise ValueError(f"exponential decay needs a positive half_life, got {self.half_life!r}")

    @property
    def ends_at(self) -> datetime:
        return self.started_at + self.horizon

    def is_active(self, now: datetime) -> bool:
        return self.started_at <= now < self.ends_at

    def remaining(self, now: datetime) -> float:
        """The share of the signal still in force at now, in [0, 1]."""
        if not self.is_active(now):
            return 0.0
        if self.decay == "linear":
            return max(0.0, 1.0 - (now - self.started_at) / self.horizon)
        assert self.half_life is not None
        return 0.5 ** ((now - self.started_at) / self.half_life)


@dataclass(frozen=True)
class QuoteOverride:
    """A risk manager's params for one asset: replace every signal on it until ``until``."""

    asset: str
    until: datetime
    spread_multiplier: float = 1.0
    bid_widening_bps: float = 0.0
    ask_widening_bps: float = 0.0
    skew_bps: float = 0.0
    reason: str = ""

    def is_active(self, now: datetime) -> bool:
        return now < self.until


@dataclass(frozen=True)
class QuoteAdjustment:
    """What the engine applies to its model quotes; mirrors tapewatch.quoting.v1.QuoteParams.

    The defaults are base quoting. Every number is finite and within its caps (checked here, so a NaN
    cannot reach the engine).
    """

    asset: str
    spread_multiplier: float = 1.0  # applied to the model spread, >= 1
    bid_widening_bps: float = 0.0  # added below the bid
    ask_widening_bps: float = 0.0  # added above the ask
    skew_bps: float = 0.0  # shift of both quotes; negative = down
    valid_until: datetime | None = None  # when the last adjustment has decayed; None at base
    signal_ids: tuple[str, ...] = ()
    override_active: bool = False
    kill_switch: bool = False
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        numbers = (self.spread_multiplier, self.bid_widening_bps, self.ask_widening_bps, self.skew_bps)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"quote adjustment must be finite: {self}")
        if self.spread_multiplier < 1 or self.bid_widening_bps < 0 or self.ask_widening_bps < 0:
            raise ValueError(f"quote adjustment needs multiplier >= 1 and widenings >= 0: {self}")

    @property
    def is_base(self) -> bool:
        bps = (self.bid_widening_bps, self.ask_widening_bps, self.skew_bps)
        return self.spread_multiplier == 1.0 and not any(bps)


def _in_force(signal: SignalAdjustment, now: datetime, caps: Caps) -> tuple[float, float, float, float]:
    """(bid widening, ask widening, skew, multiplier) of one signal at now, inputs capped first."""
    share = signal.remaining(now)
    widening = caps.widening(signal.widening_bps) * share
    skew = caps.skew(signal.skew_bps) * share
    multiplier = 1.0 + (caps.multiplier(signal.vol_multiplier) - 1.0) * share
    extra = min(abs(skew), widening)
    return widening + (extra if skew < 0 else 0.0), widening + (extra if skew > 0 else 0.0), skew, multiplier


def combine(
    asset: str,
    signals: Iterable[SignalAdjustment],
    now: datetime,
    caps: Caps,
    *,
    override: QuoteOverride | None = None,
    kill_switch: bool = False,
) -> QuoteAdjustment:
    """The adjustment for one asset at now. Signals for other assets are ignored."""
    if kill_switch:
        return QuoteAdjustment(asset=asset, kill_switch=True, as_of=now)
    if override is not None and override.asset != asset:
        raise ValueError(f"override is for {override.asset!r}, not {asset!r}")
    live = [s for s in signals if s.asset == asset and s.is_active(now)]
    ids = tuple(s.signal_id for s in live)
    ends = [s.ends_at for s in live]
    if override is not None and override.is_active(now):
        values = (
            override.spread_multiplier,
            override.bid_widening_bps,
            override.ask_widening_bps,
            override.skew_bps,
        )
        ends.append(override.until)
    elif live:
        forces = [_in_force(s, now, caps) for s in live]
        skews = [f[2] for f in forces]
        values = (
            max(f[3] for f in forces),
            max(f[0] for f in forces),
            max(f[1] for f in forces),
            min(0.0, *skews) + max(0.0, *skews),
        )
    else:
        return QuoteAdjustment(asset=asset, as_of=now)
    multiplier, bid_widening, ask_widening, skew = values
    return QuoteAdjustment(
        asset=asset,
        spread_multiplier=caps.multiplier(multiplier),
        bid_widening_bps=caps.widening(bid_widening),
        ask_widening_bps=caps.widening(ask_widening),
        skew_bps=caps.skew(skew),
        valid_until=max(ends),
        signal_ids=ids,
        override_active=override is not None and override.is_active(now),
        as_of=now,
    )


def _moved(old: QuoteAdjustment, new: QuoteAdjustment, tol_bps: float, tol_multiplier: float) -> bool:
    bps = ("bid_widening_bps", "ask_widening_bps", "skew_bps")
    slack = 1e-9  # float noise must not hide a change of exactly the tolerance
    return (
        any(abs(getattr(old, f) - getattr(new, f)) >= tol_bps - slack for f in bps)
        or abs(old.spread_multiplier - new.spread_multiplier) >= tol_multiplier - slack
        or (old.signal_ids, old.override_active) != (new.signal_ids, new.override_active)
    )


def decay_steps(
    asset: str,
    signals: Iterable[SignalAdjustment],
    now: datetime,
    caps: Caps,
    *,
    override: QuoteOverride | None = None,
    kill_switch: bool = False,
    tolerance_bps: float = 0.5,
    tolerance_multiplier: float = 0.01,
    resolution: timedelta = timedelta(seconds=1),
    limit: int | None = None,
) -> list[QuoteAdjustment]:
    """The updates to push after now, each with its time in ``as_of``, until everything is back at base.

    A step is due when some bps field moved by >= tolerance_bps, or the multiplier by >= tolerance_multiplier,
    since the last step (or since now), or when the set of signals or the override changes. Decay is
    sampled every ``resolution`` (a step is at most that late); starts and ends are exact. The last step
    is the return to base. Empty when the kill
    switch is on or nothing is pending. ``limit`` stops after that many steps: a live scheduler asks for
    the next one only, instead of sampling a whole horizon at once.
    """
    if kill_switch:
        return []
    signals = [s for s in signals if s.asset == asset]
    edges = {t for s in signals for t in (s.started_at, s.ends_at)}
    if override is not None:
        edges.add(override.until)
    edges_ahead = sorted(t for t in edges if t > now)
    steps: list[QuoteAdjustment] = []
    last = combine(asset, signals, now, caps, override=override)
    t = now
    while edges_ahead:
        decaying = any(s.is_active(t) for s in signals) and not (override and override.is_active(t))
        t = min(t + resolution, edges_ahead[0]) if decaying else edges_ahead[0]
        if t == edges_ahead[0]:
            edges_ahead.pop(0)
        current = combine(asset, signals, t, caps, override=override)
        if _moved(last, current, tolerance_bps, tolerance_multiplier):
            steps.append(current)
            last = current
            if limit is not None and len(steps) >= limit:
                break
    return steps
