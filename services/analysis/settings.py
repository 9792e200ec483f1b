from __future__ import annotations

import os
import re
import socket
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from services.analysis.assets import BY_SYMBOL
from services.runtime.settings import ServiceSettings, listen_port

_PLACEHOLDER = re.compile(r"change-?me|<[^>]*>|\byour[-_ ]|\bx{4,}\b|placeholder|\btodo\b|\.example\b", re.I)


class AnalysisSettings(ServiceSettings):
    """TAPEWATCH_<FIELD> or the `[analysis]` table of the config file."""

    section: ClassVar[str] = "analysis"

    listen_host: str = "127.0.0.1"

    # Streams.
    news_stream: str = "news.unique"
    signals_stream: str = "signals.pending"
    consumer_group: str = "analysis"
    consumer_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    consumer_concurrency: int = Field(default=2, ge=1, le=64, description="stories judged at once")
    stream_maxlen: int = Field(default=100_000, ge=1000)

    # Model: every call has a deadline; past it (or with the server down) the rules judge.
    model_label: str = "gemma-3-270m-q4_k_m (llama.cpp, CPU)"
    prompt_version: str = "impact-v1"
    model_deadline_s: float = Field(default=10.0, gt=0, le=120, description="per story, queueing included")
    model_concurrency: int = Field(default=2, ge=1, le=64)
    max_tokens: int = Field(default=200, ge=64, le=1024)
    retry_temperature: float = Field(default=0.3, ge=0, le=2)

    # Assets: those named in a story (alias table), else the desk's quoted assets.
    quoted_assets: tuple[str, ...] = ("BTC", "ETH")
    always_assets: tuple[str, ...] = ()
    max_assets: int = Field(default=4, ge=1, le=10)

    # Market state from tw:market:<ASSET> (pushed by the quoting adapter).
    market_prefix: str = "tw:market:"
    recent_minutes: int = Field(default=30, ge=5, le=240)
    baseline_hours: float = Field(default=24.0, gt=0, le=24 * 7)
    min_history_minutes: int = Field(default=120, ge=10)

    # Probability model (log-odds; see services/analysis/market.py).
    market_base_rate: float = Field(default=0.15, gt=0, lt=1)
    vol_ratio_weight: float = Field(default=0.6, ge=0, le=10)
    move_ratio_weight: float = Field(default=0.6, ge=0, le=10)
    active_hours_utc: tuple[int, int] = (13, 21)
    active_hours_log_odds: float = Field(default=0.2, ge=-3, le=3)
    news_weight: float = Field(default=0.6, ge=0, le=5)
    news_base_rate: float = Field(default=0.15, gt=0, lt=1)
    echo_log_odds: float = Field(default=0.1, ge=0, le=2)

    # Policy caps (per side / absolute / multiplier) and horizons.
    max_widening_bps: float = Field(default=50.0, ge=0, le=2000)
    max_skew_bps: float = Field(default=25.0, ge=0, le=2000)
    max_vol_multiplier: float = Field(default=3.0, ge=1, le=20)
    min_horizon_minutes: int = Field(default=5, ge=1)
    max_horizon_minutes: int = Field(default=120, ge=5, le=24 * 60)
    signal_expiry_s: int = Field(default=300, ge=10, le=24 * 3600, description="pending signals expire")

    # Archive: hot in Redis with a TTL, and JSONL files under data_dir/analysis/.
    hot_ttl_s: int = Field(default=7 * 86400, ge=60)
    embedding_dim: int = Field(default=384, ge=8, le=8192, description="used when the embedder is down")

    # Alerts (unset: not sent).
    slack_webhook_url: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    alert_timeout_s: float = Field(default=3.0, gt=0, le=30)

    # Ask.
    ask_max_question_chars: int = Field(default=1000, ge=10)
    ask_max_window_days: float = Field(default=30.0, gt=0, le=365)
    ask_max_citations: int = Field(default=5, ge=1, le=50)

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{listen_port(self.analysis_addr)}"

    @field_validator("quoted_assets", "always_assets")
    @classmethod
    def _known_assets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(a.strip().upper() for a in v if a.strip())
        unknown = [a for a in out if a not in BY_SYMBOL]
        if unknown:
            raise ValueError(f"unknown assets {unknown}; known: {', '.join(BY_SYMBOL)}")
        return out

    @field_validator("slack_webhook_url", "telegram_bot_token")
    @classmethod
    def _no_placeholder(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None
        if _PLACEHOLDER.search(v.get_secret_value()):
            raise ValueError("looks like a placeholder, not a real secret")
        return v

    @field_validator("slack_webhook_url")
    @classmethod
    def _https_webhook(cls, v: SecretStr | None) -> SecretStr | None:
        url = v.get_secret_value() if v else ""
        if v and not (url.startswith("https://") or url.startswith(("http://127.0.0.1", "http://localhost"))):
            raise ValueError("must be an https:// URL (http:// only on loopback)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisSettings:
        if self.telegram_bot_token and not self.telegram_chat_id:
            raise ValueError("telegram_bot_token is set but telegram_chat_id is not")
        if self.min_horizon_minutes > self.max_horizon_minutes:
            raise ValueError("min_horizon_minutes is above max_horizon_minutes")
        start, end = self.active_hours_utc
        if not (0 <= start <= 24 and 0 <= end <= 24):
            raise ValueError("active_hours_utc must be two hours in 0..24")
        return self
