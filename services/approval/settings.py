"""Settings of the approval gate and the trader console (TOML table `[approval]`, TAPEWATCH_* variables)."""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.runtime.settings import ServiceSettings, listen_port

Role = Literal["trader", "viewer"]
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class TraderAccount(BaseModel):
    """A console / API account seeded from configuration. Only the argon2 hash is ever configured."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    password_hash: str
    role: Role = "trader"

    @field_validator("password_hash")
    @classmethod
    def _argon2_hash(cls, v: str) -> str:
        if not v.startswith(("$argon2id$", "$argon2i$", "$argon2d$")) or v.count("$") < 5:
            raise ValueError(
                "must be an argon2 hash (make one with `tapewatch approval hash-password`), "
                "never a password or a placeholder"
            )
        return v


class ApiToken(BaseModel):
    """A long-lived bearer token for a machine client; configured as the SHA-256 of the token."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    token_sha256: str
    role: Role = "viewer"

    @field_validator("token_sha256")
    @classmethod
    def _sha256(cls, v: str) -> str:
        if not _SHA256_HEX.match(v):
            raise ValueError("must be the 64-hex SHA-256 of the token (`tapewatch approval new-api-token`)")
        if len(set(v)) < 8:
            raise ValueError("looks like a placeholder, not a SHA-256")
        return v


class ApprovalSettings(ServiceSettings):
    section: ClassVar[str] = "approval"

    listen_host: str = "127.0.0.1"
    console_addr: str = "127.0.0.1:8054"  # host:port of the trader console (HTTP)

    pending_stream: str = "signals.pending"
    approved_stream: str = "signals.approved"
    consumer_group: str = "approval"
    approved_maxlen: int = Field(default=1_000_000, ge=1000)

    expiry_s: float = Field(default=120.0, gt=0, le=3600, description="how long a signal waits for a trader")
    sweep_interval_s: float = Field(default=0.25, gt=0, le=10)
    decided_ttl_s: int = Field(default=7 * 86400, ge=60, description="how long a decided signal is kept")
    history_size: int = Field(default=500, ge=10, le=100_000)

    # Caps on a trader's edits (ACTION_MODIFY); the quoting adapter clamps again.
    max_widening_bps: float = Field(default=50.0, gt=0, le=1000)
    max_skew_bps: float = Field(default=30.0, ge=0, le=1000)
    max_horizon_minutes: int = Field(default=120, ge=1, le=24 * 60)
    max_vol_multiplier: float = Field(default=3.0, ge=1, le=20)

    # Access.
    traders: tuple[TraderAccount, ...] = ()
    api_tokens: tuple[ApiToken, ...] = ()
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 86400)
    cookie_secure: bool = False  # set when the console is served over TLS
    sso_header: str = ""  # e.g. "X-Forwarded-User"; empty: SSO off
    sso_proxies: tuple[str, ...] = ()  # the proxy addresses allowed to set sso_header
    login_max_failures: int = Field(default=10, ge=1, le=1000)
    login_lockout_s: int = Field(default=900, ge=1)

    # Talks to, when present; the console degrades without them.
    ask_window_hours: float = Field(default=24.0, gt=0, le=30 * 24)

    @property
    def listen(self) -> str:
        return f"{self.listen_host}:{listen_port(self.approval_addr)}"

    @property
    def console_host(self) -> str:
        return self.console_addr.rpartition(":")[0]

    @property
    def console_port(self) -> int:
        return listen_port(self.console_addr)

    @field_validator("console_addr")
    @classmethod
    def _console_host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{v!r} is not host:port")
        return v

    @field_validator("sso_proxies")
    @classmethod
    def _ip_addresses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for address in v:
            ipaddress.ip_address(address)  # raises ValueError naming the bad address
        return v

    @model_validator(mode="after")
    def _sso_needs_proxies(self) -> ApprovalSettings:
        if self.sso_header and not self.sso_proxies:
            raise ValueError("sso_header is set but sso_proxies is empty: name the proxy addresses trusted")
        names = [t.name for t in self.traders] + [t.name for t in self.api_tokens]
        if len(names) != len(set(names)):
            raise ValueError("traders and api_tokens must have distinct names")
        return self
