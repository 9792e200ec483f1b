from __future__ import annotations

from pathlib import Path

import pytest

from services.ingest.settings import IngestSettings
from services.runtime.settings import SettingsError


def test_environment_overrides_file_which_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "tapewatch.toml"
    config.write_text('[common]\nlog_level = "DEBUG"\n[ingest]\nraw_stream = "news.test"\nseen_ttl_s = 600\n')
    monkeypatch.setenv("TAPEWATCH_CONFIG", str(config))
    monkeypatch.setenv("TAPEWATCH_SEEN_TTL_S", "900")
    monkeypatch.setenv("REDIS_URL", "redis://10.0.0.5:6380/0")
    settings = IngestSettings.load()
    assert settings.log_level == "DEBUG"
    assert settings.raw_stream == "news.test"
    assert settings.seen_ttl_s == 900
    assert settings.redis_url == "redis://10.0.0.5:6380/0"


def test_bad_values_fail_fast_naming_each_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPEWATCH_INGEST_ADDR", "localhost")
    monkeypatch.setenv("TAPEWATCH_SEEN_TTL_S", "five")
    monkeypatch.setenv("REDIS_URL", "http://example")
    with pytest.raises(SettingsError) as err:
        IngestSettings.load()
    message = str(err.value)
    assert "ingest_addr='localhost'" in message and "host:port" in message
    assert "seen_ttl_s='five'" in message
    assert "redis://" in message


def test_unreadable_config_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest\n")
    monkeypatch.setenv("TAPEWATCH_CONFIG", str(bad))
    with pytest.raises(SettingsError, match=r"bad\.toml"):
        IngestSettings.load()
