from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from quoting.adjustments import Caps
from quoting.engine import EngineConfig
from services.runtime.settings import ServiceSettings, listen_port

DEFAULT_ASSETS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "TRX", "LINK", "AVAX", "TON", "LTC")


class QuotingSettings(ServiceSettings):
    section: ClassVar[str] = "quoting"

    listen_host: str = "127.0.0.1"
    approved_stream: str = "signals.approved"
    consumer_group: str = "quoting"
    consumer_name: str = Field(default="", description="unique per instance; empty: quoting-<host>-<pid>")

    # Hard caps: a second line behind the approval policy's caps; overrides beyond them are refused.
    max_widening_bps: float = Field(default=100.0, ge=0, le=10_000)
    max_vol_multiplier: float = Field(default=4.0, ge=1, le=100)
    max_skew_bps: float = Field(default=50.0, ge=0, le=10_000)

    # Decay of an approved signal over its horizon; half-life as a share of the horizon.
    decay: Literal["exponential", "linear"] = "exponential"
    half_life_fraction: float = Field(default=0.2, gt=0, le=1)
    max_horizon_minutes: int = Field(default=24 * 60, ge=1)

    # When WatchQuoteParams subscribers get a decay step.
    step_resolution_s: float = Field(default=1.0, gt=0, le=60)
    step_tolerance_bps: float = Field(default=0.5, gt=0)
    step_tolerance_multiplier: float = Field(default=0.01, gt=0)

    # Overrides and mids.
    max_override_s: float = Field(default=86_400.0, gt=0, le=86_400.0)
    max_mid_ahead_s: float = Field(
        default=60.0, ge=0, description="how far in the future a mid's time may be"
    )
    market_maxlen: int = Field(
        default=100_000, ge=100, description="mids kept per asset in tw:market:<asset>"
    )

    assets: tuple[str, ...] = Field(default=DEFAULT_ASSETS, description="assets known before any signal")
    resync_s: float = Field(default=30.0, gt=0, description="full reload from Redis, besides pub/sub")

    @field_validator("assets")
    @classmethod
    def _upper(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(a.strip().upper() for a in v if a.strip())

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{listen_port(self.quoting_addr)}"

    @property
    def caps(self) -> Caps:
        return Caps(self.max_widening_bps, self.max_vol_multiplier, self.max_skew_bps)

    @property
    def step_resolution(self) -> timedelta:
        return timedelta(seconds=self.step_resolution_s)


class EngineSettings(ServiceSettings):
    """The reference market-making engine (`tapewatch engine`); its model knobs are quoting.engine's."""

    section: ClassVar[str] = "engine"

    asset: str = "DOGE"
    prices: Path = Field(
        default=Path("../shared/data/doge_usdt_1m_musk_windows.csv"),
        description="1-minute bars CSV (time, close, volume), or '-' for mids on stdin",
    )
    speed: float = Field(
        default=60.0, ge=0, description="bars per second in a replay; 0: as fast as possible"
    )
    limit: int = Field(default=0, ge=0, description="bars to quote; 0: all")
    stamp: Literal["now", "original"] = Field(
        default="now", description="time of the mids pushed to the adapter: replay as live, or the bar's"
    )
    risk_aversion: float = Field(default=0.01, gt=0)
    arrival_decay: float = Field(default=2000.0, gt=0)
    horizon_s: float = Field(default=60.0, gt=0)
    spread_floor_bps: float = Field(default=5.0, gt=0)
    tick_size: float | None = Field(default=None, gt=0, description="price grid; unset: unrounded")
    order_size: float = Field(default=1000.0, gt=0)
    max_inventory: float = Field(default=10_000.0, gt=0)
    vol_window: int = Field(default=30, ge=1)

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig(
            risk_aversion=self.risk_aversion,
            arrival_decay=self.arrival_decay,
            horizon_s=self.horizon_s,
            spread_floor_bps=self.spread_floor_bps,
            tick_size=self.tick_size,
            order_size=self.order_size,
            max_inventory=self.max_inventory,
            vol_window=self.vol_window,
        )
