"""Avellaneda-Stoikov quotes, with the headline QuoteAdjustment applied on top.

Units (the textbook form, in absolute prices):
    s      mid price, in quote currency (e.g. USDT per BTC)
    q      inventory in base-asset units, positive = long
    sigma  volatility of the mid in price units per sqrt(second): the standard deviation of the mid's
           change over one second (from a relative vol: sigma = sigma_rel * s)
    T - t  time left in the horizon, in seconds (not a fraction of it); crypto trades around the clock,
           so by default the horizon rolls and T - t is the whole horizon
    gamma  risk aversion, 1 / (price * base unit)
    k      decay of the fill intensity with distance d from the mid, lambda(d) = A * exp(-k * d), 1 / price

    reservation price  r     = s - q * gamma * sigma^2 * (T - t)
    optimal spread     delta = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k)   (bid to ask)

The adjustment, with bps of the mid, bps(x) = s * x / 10_000:
    spread = max(delta, bps(spread_floor_bps)) * spread_multiplier
    bid    = r + bps(skew_bps) - spread / 2 - bps(bid_widening_bps)
    ask    = r + bps(skew_bps) + spread / 2 + bps(ask_widening_bps)
Then the bid rounds down and the ask up to the tick, and the book is never crossed:
ask - bid >= max(bps(spread_floor_bps), tick).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from quoting.adjustments import QuoteAdjustment

_BASE = QuoteAdjustment(asset="")


@dataclass(frozen=True)
class QuotingParams:
    risk_aversion: float  # gamma
    arrival_decay: float  # k
    horizon_s: float  # T, seconds
    spread_floor_bps: float = 1.0  # the narrowest base spread, bid to ask
    tick_size: float | None = None

    def __post_init__(self) -> None:
        for name in ("risk_aversion", "arrival_decay", "horizon_s", "spread_floor_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if self.tick_size is not None and not (math.isfinite(self.tick_size) and self.tick_size > 0):
            raise ValueError(f"tick_size must be finite and > 0, got {self.tick_size!r}")


class Quote(NamedTuple):
    bid: float
    ask: float


def bps_to_price(bps: float, mid: float) -> float:
    return mid * bps / 10_000


def _time_left(params: QuotingParams, time_left_s: float | None) -> float:
    if time_left_s is None:
        return params.horizon_s
    if math.isnan(time_left_s):
        raise ValueError("time_left_s is NaN")
    return min(max(time_left_s, 0.0), params.horizon_s)


def reservation_price(
    params: QuotingParams, mid: float, inventory: float, sigma: float, time_left_s: float | None = None
) -> float:
    """r = s - q * gamma * sigma^2 * (T - t): below the mid when long, so the book leans to selling."""
    return mid - inventory * params.risk_aversion * sigma**2 * _time_left(params, time_left_s)


def optimal_spread(params: QuotingParams, sigma: float, time_left_s: float | None = None) -> float:
    """delta = gamma * sigma^2 * (T - t) + (2 / gamma) * ln(1 + gamma / k), bid to ask, in price."""
    gamma = params.risk_aversion
    return gamma * sigma**2 * _time_left(params, time_left_s) + (2 / gamma) * math.log1p(
        gamma / params.arrival_decay
    )


def _decimals(tick: float) -> int:
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _to_tick(price: float, tick: float, up: bool) -> float:
    ticks = round(price / tick, 9)  # 100.00000000001 / 0.01 must not round up a whole tick
    return round((math.ceil(ticks) if up else math.floor(ticks)) * tick, _decimals(tick))


def quote(
    params: QuotingParams,
    mid: float,
    inventory: float,
    sigma: float,
    adjustment: QuoteAdjustment | None = None,
    *,
    time_left_s: float | None = None,
) -> Quote:
    """(bid, ask) for the mid, inventory and sigma (per sqrt(second)), with the adjustment applied.

    A kill-switched adjustment quotes at base. Raises ValueError on a non-finite or non-positive mid, a
    non-finite inventory, or a non-finite or negative sigma: there is no safe quote for those.
    """
    if not (math.isfinite(mid) and mid > 0):
        raise ValueError(f"mid must be finite and > 0, got {mid!r}")
    if not math.isfinite(inventory):
        raise ValueError(f"inventory must be finite, got {inventory!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    if adjustment is None or adjustment.kill_switch:
        adjustment = _BASE

    floor = bps_to_price(params.spread_floor_bps, mid)
    spread = max(optimal_spread(params, sigma, time_left_s), floor) * adjustment.spread_multiplier
    centre = reservation_price(params, mid, inventory, sigma, time_left_s)
    centre += bps_to_price(adjustment.skew_bps, mid)
    bid = centre - spread / 2 - bps_to_price(adjustment.bid_widening_bps, mid)
    ask = centre + spread / 2 + bps_to_price(adjustment.ask_widening_bps, mid)

    tick = params.tick_size
    if tick is not None:
        bid, ask = _to_tick(bid, tick, up=False), _to_tick(ask, tick, up=True)
    gap = max(floor, tick or 0.0)
    if ask - bid < gap * (1 - 1e-9):
        centre = (bid + ask) / 2
        bid, ask = centre - gap / 2, centre + gap / 2
        if tick is not None:
            bid, ask = _to_tick(bid, tick, up=False), _to_tick(ask, tick, up=True)
    return Quote(bid, ask)
