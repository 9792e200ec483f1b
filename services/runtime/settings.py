"""Typed settings, one object per service, from environment variables or one TOML file.

Precedence: environment (TAPEWATCH_<FIELD>, plus REDIS_URL) > the file named by TAPEWATCH_CONFIG
(`[common]` table, then the service's own table) > defaults. Bad values fail at start with one clear
message listing every problem.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

S = TypeVar("S", bound="ServiceSettings")

# What set-up builds once and keeps outside the repository: wheels, libssl1.1, the fine-tuned embedder.
CACHE = Path(os.environ.get("TAPEWATCH_CACHE", Path.home() / ".cache" / "tapewatch"))


class SettingsError(SystemExit):
    """Raised at start-up for invalid configuration; exits with the message."""


class _TomlSection(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        self.section = section

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("TAPEWATCH_CONFIG")
        if not path:
            return {}
        try:
            doc = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
        values = dict(doc.get("common", {}))
        values.update(doc.get(self.section, {}))
        return values


class ServiceSettings(BaseSettings):
    """What every service shares: the address map, Redis, telemetry and logs."""

    section: ClassVar[str] = "common"
    model_config = SettingsConfigDict(
        env_prefix="TAPEWATCH_", extra="ignore", frozen=True, populate_by_name=True
    )

    # Redis: unset means the embedded Redis Stack under data_dir.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "TAPEWATCH_REDIS_URL")
    )
    data_dir: Path = Path(".tapewatch")

    # One address map for every service (host:port).
    ingest_addr: str = "127.0.0.1:50051"
    dedup_addr: str = "127.0.0.1:50052"
    analysis_addr: str = "127.0.0.1:50053"
    approval_addr: str = "127.0.0.1:50054"
    quoting_addr: str = "127.0.0.1:50055"
    model_server_addr: str = "127.0.0.1:8001"

    # Telemetry and logs.
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str = "http://127.0.0.1:4317"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    shutdown_grace_s: float = Field(default=5.0, ge=0, le=120)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v or None

    @field_validator(
        "ingest_addr", "dedup_addr", "analysis_addr", "approval_addr", "quoting_addr", "model_server_addr"
    )
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{v!r} is not host:port")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        section = getattr(settings_cls, "section", "common")
        return init_settings, env_settings, _TomlSection(settings_cls, section)

    @classmethod
    def load(cls: type[S], **overrides: Any) -> S:
        """Build the settings or exit with every problem spelled out."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '?'}={err.get('input')!r}: {err['msg']}"
                for err in exc.errors()
            )
            raise SettingsError(f"{cls.__name__}: invalid configuration: {problems}") from None


def listen_port(addr: str) -> int:
    return int(addr.rpartition(":")[2])
