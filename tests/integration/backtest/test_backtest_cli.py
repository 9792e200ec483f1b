"""`tapewatch backtest` end to end: the CLI, the real pipeline (Redis Stack, the CPU model server), real Musk
posts and DOGE bars."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
WINDOW = ROOT / "tests" / "integration" / "analysis" / "data"  # one DOGE window, 15 Musk posts (NOTICE.md)
SHARED = ROOT.parent / "shared" / "data"
ROWS = ("static", "tapewatch", "oracle")
FIELDS = {"pnl", "adverse_selection", "fills", "max_inventory", "fees", "adjusted_bars"}


def backtest(capsys: pytest.CaptureFixture[str], server: str, *args: str) -> dict[str, Any]:
    assert main(["backtest", "--model-server", server, *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def one_window(*args: str) -> list[str]:
    return [
        "--news", str(WINDOW / "musk_news_2021-02-04.csv"),
        "--prices", str(WINDOW / "doge_usdt_1m_2021-02-04.csv"),
        *args,
    ]  # fmt: skip


def assert_rows(result: dict[str, Any]) -> None:
    assert set(result["rows"]) == set(ROWS)
    for name in ROWS:
        row = result["rows"][name]
        assert FIELDS <= set(row), name
        assert set(row["adverse_selection"]) == {"1m", "5m", "30m"}
        assert row["bars"] == result["rows"]["static"]["bars"] > 0  # the same bars for every row
    assert result["rows"]["static"]["adjusted_bars"] == 0
    assert result["rows"]["oracle"]["adjusted_bars"] > 0


@pytest.mark.skipif(not (SHARED / "musk_tweets_2010_2022.csv").exists(), reason="../shared/data not here")
def test_backtest_on_the_shared_musk_tweets_and_doge_windows(model_server, capsys) -> None:
    result = backtest(
        capsys, model_server.grpc_url,
        "--news", str(SHARED / "musk_tweets_2010_2022.csv"),
        "--prices", str(SHARED / "doge_usdt_1m_musk_windows.csv"),
        "--limit", "20", "--judge", "rules",
    )  # fmt: skip
    assert_rows(result)
    scope, pipeline = result["scope"], result["pipeline"]
    assert scope["windows"] == 1 and 0 < scope["news_replayed"] <= 20
    assert pipeline["items"] == scope["news_replayed"]
    assert pipeline["judged_by"] == {"rules": pipeline["stories"]}
    # "Excuse me, I only sell Doge!": a watched author naming DOGE, notable by the rules, approved
    assert pipeline["approved"] == pipeline["signals"] >= 1
    for signal in result["signals"]:
        pending, decided = (datetime.fromisoformat(signal[k]) for k in ("pending_at", "decided_at"))
        assert decided - pending == timedelta(seconds=10)  # the trader's delay, in event time
        assert datetime.fromisoformat(signal["published_at"]) < pending < decided
        assert signal["widening_bps"] > 0 and signal["vol_multiplier"] > 1
    tapewatch, static = result["rows"]["tapewatch"], result["rows"]["static"]
    assert tapewatch["adjusted_bars"] > 0 and tapewatch["mean_spread_bps"] > static["mean_spread_bps"]


def test_backtest_with_the_model_judging(model_server, capsys) -> None:
    result = backtest(capsys, model_server.grpc_url, *one_window("--limit", "0"))
    assert_rows(result)
    pipeline = result["pipeline"]
    placed = pipeline["stories"] + pipeline["echoes"] + pipeline["rejected_by_dedup"]  # a link only: nothing
    assert pipeline["items"] == placed == 15
    assert sum(pipeline["judged_by"].values()) == pipeline["stories"] and "llm" in pipeline["judged_by"]
    assert pipeline["approved"] == pipeline["signals"]
    if not pipeline["approved"]:  # what the small CPU model usually says: all routine
        assert result["rows"]["tapewatch"] == result["rows"]["static"]


def test_backtest_signals_left_past_their_expiry_change_nothing(model_server, capsys) -> None:
    late = backtest(
        capsys, model_server.grpc_url, *one_window("--judge", "rules", "--approval-delay-s", "600")
    )
    pipeline = late["pipeline"]
    assert pipeline["signals"] >= 2  # "Doge", "Dogecoin is the people's crypto", ...
    assert pipeline["approved"] == 0 and pipeline["expired_before_decision"] == pipeline["signals"]
    assert late["rows"]["tapewatch"] == late["rows"]["static"]
    prompt = backtest(capsys, model_server.grpc_url, *one_window("--judge", "rules"))
    assert prompt["pipeline"]["approved"] == pipeline["signals"]
    assert prompt["rows"]["tapewatch"] != prompt["rows"]["static"]
