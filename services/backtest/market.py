"""The backtest's market: the reference engine (quoting.engine.MarketMaker) quotes one asset over its bars
with whatever adjustment is in force, and resting quotes fill by a stated bar fill model.

Timing. A bar's close is known at `time + bar` (as in `tapewatch eval impact`). At each known close the
engine takes the close as the mid, updates its realised volatility and posts a bid and an ask with the
adjustment in force at that moment (`adjustment_at(known time)`). The quotes rest until the next close is
known, then are replaced: one requote per bar, so a signal approved mid-bar takes effect at the next close
(up to one bar late, never early).

Fill model. A resting quote fills in full (the order size; queue position ignored) when the next bar trades
through it: the bid when the bar's low is below it, the ask when the bar's high is above it (strictly: a
touch does not fill). Bars without high and low (the DOGE file has close and volume only) are taken to
trade the segment between the two closes, [min(c0, c1), max(c0, c1)]: a bid fills when the next close is
below it, an ask when it is above. Intrabar excursions that come back are missed, so there are fewer
fills, and each is more adverse, than on a real tape: pessimistic for a market maker, and the same for
every row. A bar with no volume fills nothing. A fill is at the quote's price, and pays the maker fee
(bps of its notional; negative is a rebate).

Windows. The bars are cut where a gap is longer than two bars (the DOGE file: 40 windows of 12 h). Each
window starts flat with a fresh engine and ends with its inventory marked at its last close (flattening
costs nothing). Order size and inventory limit are the engine's, in base units (EngineConfig: 1,000 and
10,000), as `tapewatch engine` quotes; its risk aversion is per base unit, so sizing by notional instead
would change the model's inventory term. A window at 0.7 USDT therefore weighs more than one at 0.003:
`pnl_bps` (P&L over traded notional) puts them on one scale.

Adverse selection (markouts). A fill of size q at price p, side s (buy +1, sell -1), known at t (the close
of the bar it filled in), loses s * q * (p - mid(t + h)) by h minutes later, mid being the close known then;
summed over fills, in quote currency, for h = 1, 5 and 30 minutes (positive: lost to the move after the
fill). A fill whose t + h has no close (past the window's end) is left out of that horizon and counted.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from quoting.adjustments import QuoteAdjustment
from quoting.engine import Bar, EngineConfig, MarketMaker
from services.analysis.market import parse_time_ms

MARKOUT_MINUTES = (1, 5, 30)
AdjustmentAt = Callable[[datetime], QuoteAdjustment | None]
PricesAt = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class Book:
    """The engine (its order size and inventory limit are in base units) and the maker fee."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    maker_fee_bps: float = 1.0  # of each fill's notional; negative: a rebate

    def __post_init__(self) -> None:
        if not math.isfinite(self.maker_fee_bps):
            raise ValueError(f"maker_fee_bps must be finite, got {self.maker_fee_bps!r}")


@dataclass(frozen=True)
class Fill:
    known_ms: int  # the close of the bar it filled in
    side: int  # +1 bought (our bid was hit), -1 sold
    price: float
    size: float


def split_windows(bars: Sequence[Bar], bar: timedelta, max_gap_bars: int = 2) -> list[list[Bar]]:
    """Runs of bars with no gap longer than max_gap_bars bars."""
    windows: list[list[Bar]] = []
    for b in bars:
        if windows and b.time - windows[-1][-1].time <= bar * max_gap_bars:
            windows[-1].append(b)
        else:
            windows.append([b])
    return windows


def read_ranges(path: Path) -> dict[datetime, tuple[float, float]] | None:
    """(low, high) per bar time when the prices file has `high` and `low` columns, else None."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if not {"time", "high", "low"} <= set(cols):
            return None
        return {
            datetime.fromtimestamp(parse_time_ms(r[cols["time"]]) / 1000, UTC): (
                float(r[cols["low"]]),
                float(r[cols["high"]]),
            )
            for r in reader
        }


@dataclass
class Ledger:
    """One row's account over every window."""

    pnl: float = 0.0
    fees: float = 0.0
    traded_notional: float = 0.0
    max_inventory: float = 0.0  # base units
    max_inventory_notional: float = 0.0
    bars: int = 0
    adjusted_bars: int = 0
    spread_bps_sum: float = 0.0
    two_sided_bars: int = 0
    fills: list[Fill] = field(default_factory=list)
    markouts: dict[int, list[float | None]] = field(default_factory=dict)  # per horizon, per fill

    def report(self) -> dict[str, Any]:
        buys = sum(f.side > 0 for f in self.fills)
        lost: dict[str, float] = {}
        lost_bps: dict[str, float | None] = {}
        unmarked: dict[str, int] = {}
        for h in MARKOUT_MINUTES:
            marks = self.markouts.get(h, [None] * len(self.fills))
            marked = [(f, m) for f, m in zip(self.fills, marks, strict=True) if m is not None]
            notional = sum(f.price * f.size for f, _ in marked)
            lost[f"{h}m"] = round(sum(m for _, m in marked), 4)
            lost_bps[f"{h}m"] = round(sum(m for _, m in marked) / notional * 10_000, 3) if notional else None
            unmarked[f"{h}m"] = len(self.fills) - len(marked)
        return {
            "pnl": round(self.pnl, 4),
            "pnl_before_fees": round(self.pnl + self.fees, 4),
            "fees": round(self.fees, 4),
            "fills": len(self.fills),
            "buys": buys,
            "sells": len(self.fills) - buys,
            "pnl_bps": round(self.pnl / self.traded_notional * 10_000, 3) if self.traded_notional else None,
            "traded_notional": round(self.traded_notional, 2),
            "max_inventory": round(self.max_inventory, 6),
            "max_inventory_notional": round(self.max_inventory_notional, 2),
            "adverse_selection": lost,
            "adverse_selection_bps": lost_bps,
            "fills_without_markout": unmarked,
            "bars": self.bars,
            "adjusted_bars": self.adjusted_bars,
            "mean_spread_bps": round(self.spread_bps_sum / self.two_sided_bars, 3)
            if self.two_sided_bars
            else None,
        }


def simulate(
    windows: Sequence[Sequence[Bar]],
    bar: timedelta,
    book: Book,
    adjustment_at: AdjustmentAt,
    prices_at: PricesAt,
    ranges: dict[datetime, tuple[float, float]] | None = None,
) -> Ledger:
    """Quote every window with the adjustment in force at each known close; fills by the module's model."""
    ledger = Ledger()
    fee_rate = book.maker_fee_bps / 10_000
    for window in windows:
        if len(window) < 2:
            continue
        mm = MarketMaker(book.engine)
        for now_bar, next_bar in itertools.pairwise(window):
            known = now_bar.time + bar
            adjustment = adjustment_at(known)
            quote = mm.on_mid(known, now_bar.close, adjustment)
            ledger.bars += 1
            if adjustment is not None and not adjustment.is_base:
                ledger.adjusted_bars += 1
            if quote.bid is not None and quote.ask is not None:
                ledger.two_sided_bars += 1
                ledger.spread_bps_sum += (quote.ask - quote.bid) / now_bar.close * 10_000
            if next_bar.volume <= 0:
                continue
            low, high = (ranges or {}).get(next_bar.time) or (
                min(now_bar.close, next_bar.close),
                max(now_bar.close, next_bar.close),
            )
            filled_ms = int((next_bar.time + bar).timestamp() * 1000)
            for side, price, through in ((1, quote.bid, low), (-1, quote.ask, high)):
                if price is None or not (through < price if side > 0 else through > price):
                    continue
                mm.fill("buy" if side > 0 else "sell", price, quote.size)
                fee = abs(price * quote.size) * fee_rate
                mm.cash -= fee
                ledger.fees += fee
                ledger.traded_notional += price * quote.size
                ledger.fills.append(Fill(filled_ms, side, price, quote.size))
            ledger.max_inventory = max(ledger.max_inventory, abs(mm.inventory))
            ledger.max_inventory_notional = max(
                ledger.max_inventory_notional, abs(mm.inventory) * next_bar.close
            )
        ledger.pnl += mm.mark(window[-1].close)
    _markouts(ledger, prices_at)
    return ledger


def _markouts(ledger: Ledger, prices_at: PricesAt) -> None:
    known = np.array([f.known_ms for f in ledger.fills], dtype=np.int64)
    for h in MARKOUT_MINUTES:
        later = prices_at(known + h * 60_000) if ledger.fills else np.zeros(0)
        ledger.markouts[h] = [
            None if np.isnan(mid) else f.side * f.size * (f.price - float(mid))
            for f, mid in zip(ledger.fills, later, strict=True)
        ]
