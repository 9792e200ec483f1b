"""`tapewatch eval impact` end to end: the CLI, the real model server, real news and DOGE prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import main

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
KEYS = {
    "items", "moved_rate", "auc", "auc_market_state_only", "auc_news_only", "precision_top_decile",
    "latency_p50_ms", "latency_p99_ms", "materiality_vs_moved",
}  # fmt: skip


def run_eval(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["eval", "impact", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_impact_on_one_doge_window_with_the_model(model_server, capsys) -> None:
    news, prices = DATA / "musk_news_2021-02-04.csv", DATA / "doge_usdt_1m_2021-02-04.csv"
    server = model_server.grpc_url
    result = run_eval(capsys, "--news", str(news), "--prices", str(prices), "--model-server", server)
    assert KEYS <= set(result)
    assert result["items"] == 15 and result["skipped"] == {}
    assert result["judged_by"] == {"llm": 15}
    table = result["materiality_vs_moved"]
    assert sum(row["items"] for row in table.values()) == 15
    assert 0 <= result["moved_rate"] <= 1 and result["latency_p50_ms"] > 0


@pytest.mark.skipif(
    not (SHARED / "musk_crypto_tweets_curated.csv").exists(), reason="../shared/data not here"
)
def test_eval_impact_reads_the_shared_files_directly(capsys) -> None:
    result = run_eval(
        capsys,
        "--news", str(SHARED / "musk_crypto_tweets_curated.csv"),
        "--prices", str(SHARED / "doge_usdt_1m_musk_windows.csv"),
        "--rules-only",
    )  # fmt: skip
    assert result["items"] > 20 and result["judged_by"] == {"rules": result["items"]}
    assert result["auc_market_state_only"] is not None and result["auc"] is not None
