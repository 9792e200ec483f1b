"""Analysis settings: fail fast on bad values, placeholder secrets and half-configured alerts."""

from __future__ import annotations

import pytest

from services.analysis.settings import AnalysisSettings
from services.runtime.settings import SettingsError


def test_defaults_load() -> None:
    s = AnalysisSettings.load()
    assert s.news_stream == "news.unique" and s.signals_stream == "signals.pending"
    assert s.slack_webhook_url is None and s.quoted_assets == ("BTC", "ETH")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"slack_webhook_url": "https://hooks.slack.com/services/CHANGEME"}, "placeholder"),
        ({"slack_webhook_url": "https://hooks.slack.com/services/<your-webhook>"}, "placeholder"),
        ({"slack_webhook_url": "http://hooks.slack.com/services/T1/B2/abc"}, "https://"),
        ({"telegram_bot_token": "123:AAAbbbCCC"}, "telegram_chat_id"),
        ({"telegram_bot_token": "xxxx", "telegram_chat_id": "1"}, "placeholder"),
        ({"quoted_assets": ["BTC", "NOTACOIN"]}, "unknown assets"),
        ({"max_widening_bps": -1}, "max_widening_bps"),
        ({"min_horizon_minutes": 60, "max_horizon_minutes": 30}, "min_horizon_minutes"),
    ],
)
def test_bad_values_stop_the_service_with_the_reason(values: dict[str, object], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        AnalysisSettings.load(**values)


def test_secrets_do_not_show_in_reprs() -> None:
    s = AnalysisSettings.load(telegram_bot_token="123456:AAHfiqksKZ8WmR2zSjiQ7", telegram_chat_id="-100")
    assert "AAHfiq" not in repr(s) and s.telegram_bot_token is not None
    assert AnalysisSettings.load(quoted_assets=["doge"]).quoted_assets == ("DOGE",)
