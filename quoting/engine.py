"""Reference market-making engine: quotes one asset from a series of mids with the Avellaneda-Stoikov model
(quoting.avellaneda_stoikov) and the adapter's QuoteAdjustment on top. No I/O and no gRPC here: the demo
wires it to the adapter (services/quoting_adapter/engine_client.py), the backtest to a fill model.

Model parameters are relative to the mid, so one config fits an asset at any price level:
    gamma = risk_aversion / mid,  k = arrival_decay / mid,  sigma = sigma_rel * mid
which gives, as shares of the mid (q = inventory in base units, T = horizon_s, g = risk_aversion,
kappa = arrival_decay):
    spread              = g * sigma_rel^2 * T + (2 / g) * ln(1 + g / kappa)
    reservation shift   = -q * g * sigma_rel^2 * T
e.g. arrival_decay 2000 puts the base spread near 2 / 2000 = 10 bps.

Realised volatility (RealisedVol): sigma_rel^2 = mean over the last `window` returns of
ln(m_i / m_{i-1})^2 / dt_i (dt in seconds): per second, zero-mean, fine with uneven spacing; a gap
longer than max_gap_s starts the estimate afresh.

Inventory limit: at +max_inventory the bid is not quoted, at -max_inventory the ask (only the reducing side).
"""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from quoting.adjustments import QuoteAdjustment
from quoting.avellaneda_stoikov import QuotingParams, quote


@dataclass(frozen=True)
class EngineConfig:
    risk_aversion: float = 0.01  # gamma * mid
    arrival_decay: float = 2000.0  # k * mid
    horizon_s: float = 60.0
    spread_floor_bps: float = 5.0
    tick_size: float | None = None
    order_size: float = 1000.0  # base units per quote
    max_inventory: float = 10_000.0  # base units, either way
    vol_window: int = 30  # returns in the realised-vol estimate
    max_gap_s: float = 600.0  # a longer gap between mids restarts the estimate
    fallback_sigma_rel: float = 4e-4  # per sqrt(second), until the first return is in

    def __post_init__(self) -> None:
        if not (self.order_size > 0 and self.max_inventory >= self.order_size):
            raise ValueError(f"need order_size > 0 and max_inventory >= order_size: {self}")
        if self.vol_window < 1 or not (self.max_gap_s > 0 and self.fallback_sigma_rel >= 0):
            raise ValueError(f"need vol_window >= 1, max_gap_s > 0, fallback_sigma_rel >= 0: {self}")
        self.model(1.0)  # the model's own checks

    def model(self, mid: float) -> QuotingParams:
        """The model's absolute parameters at this mid."""
        return QuotingParams(
            risk_aversion=self.risk_aversion / mid,
            arrival_decay=self.arrival_decay / mid,
            horizon_s=self.horizon_s,
            spread_floor_bps=self.spread_floor_bps,
            tick_size=self.tick_size,
        )


class EngineQuote(NamedTuple):
    bid: float | None  # None: not quoted (inventory at its long limit)
    ask: float | None  # None: not quoted (inventory at its short limit)
    size: float


def quote_step(
    config: EngineConfig, mid: float, inventory: float, sigma: float, adjustment: QuoteAdjustment | None
) -> EngineQuote:
    """The engine's quote: A-S at this mid, inventory (base units) and sigma (price per sqrt(second)),
    with the adjustment applied (None or kill switch: base quoting), within the inventory limit."""
    bid, ask = quote(config.model(mid), mid, inventory, sigma, adjustment)
    room = 1e-9 * config.max_inventory
    return EngineQuote(
        bid if inventory + config.order_size <= config.max_inventory + room else None,
        ask if inventory - config.order_size >= -config.max_inventory - room else None,
        config.order_size,
    )


@dataclass
class RealisedVol:
    window: int = 30
    max_gap_s: float = 600.0
    fallback_sigma_rel: float = 4e-4
    _last: tuple[datetime, float] | None = None
    _terms: deque[float] = field(default_factory=deque)

    def update(self, when: datetime, mid: float) -> None:
        if self._last is not None:
            then, last_mid = self._last
            dt = (when - then).total_seconds()
            if dt > self.max_gap_s or dt < 0:
                self._terms.clear()
            elif dt > 0:
                self._terms.append(math.log(mid / last_mid) ** 2 / dt)
                if len(self._terms) > self.window:
                    self._terms.popleft()
        self._last = (when, mid)

    @property
    def sigma_rel(self) -> float:
        """Per sqrt(second), as a share of the mid."""
        if not self._terms:
            return self.fallback_sigma_rel
        return math.sqrt(sum(self._terms) / len(self._terms))

    def sigma(self, mid: float) -> float:
        """Price units per sqrt(second) at this mid."""
        return self.sigma_rel * mid


Side = Literal["buy", "sell"]


@dataclass
class MarketMaker:
    """One asset's engine state: volatility estimate, inventory and cash. Fills come from outside."""

    config: EngineConfig
    inventory: float = 0.0
    cash: float = 0.0
    fills: int = 0
    vol: RealisedVol = field(init=False)

    def __post_init__(self) -> None:
        self.vol = RealisedVol(self.config.vol_window, self.config.max_gap_s, self.config.fallback_sigma_rel)

    def on_mid(self, when: datetime, mid: float, adjustment: QuoteAdjustment | None) -> EngineQuote:
        if not (math.isfinite(mid) and mid > 0):
            raise ValueError(f"mid must be finite and > 0, got {mid!r}")
        self.vol.update(when, mid)
        return quote_step(self.config, mid, self.inventory, self.vol.sigma(mid), adjustment)

    def fill(self, side: Side, price: float, size: float) -> None:
        signed = size if side == "buy" else -size
        self.inventory += signed
        self.cash -= signed * price
        self.fills += 1

    def mark(self, mid: float) -> float:
        """Profit and loss marked at the mid."""
        return self.cash + self.inventory * mid


class Bar(NamedTuple):
    time: datetime
    close: float
    volume: float


def read_bars(lines: Iterable[str]) -> Iterator[Bar]:
    """Bars from CSV text with columns time, close[, volume]; times are UTC ("2021-02-04 08:00:00")."""
    for n, row in enumerate(csv.DictReader(lines), start=2):
        try:
            when = datetime.fromisoformat(row["time"].strip())
            close = float(row["close"])
            volume = float(row.get("volume") or 0.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"line {n}: need time and close columns ({exc})") from None
        if not (math.isfinite(close) and close > 0):
            raise ValueError(f"line {n}: close must be finite and > 0, got {row['close']!r}")
        yield Bar(when if when.tzinfo else when.replace(tzinfo=UTC), close, volume)


def load_bars(path: Path) -> list[Bar]:
    with path.open(newline="") as f:
        return list(read_bars(f))
