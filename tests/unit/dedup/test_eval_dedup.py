"""`tapewatch eval dedup`: the report from known similarities, the pair file, the plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from services.dedup.rule import Thresholds
from services.dedup.text import for_embedding
from services.evals.dedup import Pair, evaluate, load_pairs, plot

PAIRS = Path(__file__).resolve().parents[2] / "data" / "dedup_pairs.csv"


def test_report_counts_the_full_rule_and_the_middle() -> None:
    pairs = [
        Pair("SEC approves spot ETH ETF", "BREAKING: SEC approves spot $ETH ETF", 1, "repost"),
        Pair("SEC approves spot ETH ETF", "SEC delays spot ETH ETF decision", 0, "direction"),
        Pair("Binance Labs launches $500M fund", "Binance Labs’ $500 million Web3 fund", 1, "cross_outlet"),
        Pair("Bitcoin rises", "Solana outage", 0, "unrelated"),
    ]
    report = evaluate(pairs, [0.97, 0.88, 0.62, 0.2], Thresholds())
    assert report["pairs"] == 4
    assert (report["precision"], report["recall"], report["f1"]) == (1.0, 1.0, 1.0)
    assert report["cosine_only"]["precision"] == 0.5  # the embedding alone calls the ETF delay a copy
    assert report["ambiguous_fraction_pos"] == 0.5 and report["ambiguous_fraction_neg"] == 0.0
    assert report["per_kind"]["direction"] == {
        "pairs": 1, "positives": 0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
        "mean_similarity": 0.88, "ambiguous": 0,
    }  # fmt: skip
    assert report["mistakes"] == []


def test_the_pair_file_is_labelled_and_holds_the_acceptance_examples() -> None:
    pairs = load_pairs(PAIRS)
    assert 60 <= len(pairs) <= 150
    assert {p.label for p in pairs} == {0, 1}
    assert all(p.kind for p in pairs)
    texts = {(p.a_text, for_embedding(p.b_text).lower(), p.label) for p in pairs}
    assert ("SEC approves spot ETH ETF", "sec delays spot eth etf decision", 0) in texts
    assert ("Bitcoin ETFs see $500M inflows", "bitcoin etfs see $300m outflows", 0) in texts
    with PAIRS.open(newline="") as f:
        assert all(row["origin"] for row in csv.DictReader(f))  # every pair says where it came from


def test_bad_pair_files_stop_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a_text,b_text\nx,y\n")
    with pytest.raises(SystemExit, match="missing columns label"):
        load_pairs(path)
    path.write_text("a_text,b_text,label\nx,y,yes\n")
    with pytest.raises(SystemExit, match="label must be 0 or 1"):
        load_pairs(path)


def test_plot_marks_pairs_and_thresholds(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    pairs = [Pair("a b", "a b c", 1), Pair("c d", "e f", 0)]
    plot(pairs, [0.9, 0.3], Thresholds(), tmp_path / "sim.png", "test")
    assert (tmp_path / "sim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
