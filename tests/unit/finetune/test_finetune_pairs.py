"""The pair builder on a small news file with a word-count embedder: copies, the split, what is left out."""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.finetune import pairs as P

NEWS = [  # (date, outlet, title, summary)
    (
        "1-6-2022 10:00",
        "CoinTelegraph",
        "Binance Labs launches $500M Web3 fund",
        "Binance Labs launched a $500M fund for Web3 startups.",
    ),
    (
        "1-6-2022 12:00",
        "CryptoPotato",
        "Binance Labs launches $500M fund for Web3",
        "Binance Labs launched a $500M fund for Web3 startups today.",
    ),
    (
        "1-6-2022 09:00",
        "CryptoNews",
        "Bitcoin price drops below $30K",
        "Bitcoin fell under $30K on Wednesday.",
    ),
    (
        "1-6-2022 11:00",
        "CryptoPotato",
        "Solana network halts for seven hours",
        "The Solana network stopped producing blocks.",
    ),
    (
        "2-6-2022 08:00",
        "CoinTelegraph",
        "Coinbase lays off 18% of staff",
        "Coinbase cut 18% of its employees.",
    ),
    (
        "2-6-2022 09:30",
        "CoinTelegraph",
        "Coinbase lays off 18% of its staff",
        "Coinbase cut 18% of its employees today.",
    ),
    (
        "9-6-2022 10:00",
        "CryptoNews",
        "Kraken adds staking for Polkadot",
        "Kraken users can now stake Polkadot.",
    ),
    (
        "12-6-2022 10:00",
        "CoinTelegraph",
        "Celsius pauses withdrawals amid extreme market conditions",
        "Celsius paused all withdrawals, swaps and transfers.",
    ),
    (
        "12-6-2022 13:00",
        "CryptoNews",
        "Celsius pauses withdrawals citing extreme market conditions",
        "Celsius paused all withdrawals, swaps and transfers between accounts.",
    ),
    (
        "13-6-2022 09:00",
        "CryptoPotato",
        "Ethereum rallies 9% as Merge date nears",
        "Ether gained 9% after developers set a Merge date.",
    ),
]


def words_embed(texts: list[str]) -> npt.NDArray[np.float32]:
    """A stand-in embedder: word counts hashed into 512 dimensions, L2-normalised."""
    out = np.zeros((len(texts), 512), dtype=np.float32)
    for n, text in enumerate(texts):
        for w in re.findall(r"[a-z0-9$%]+", text.lower()):
            out[n, zlib.crc32(w.encode()) % 512] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def write_news(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["date", "sentiment", "source", "subject", "text", "title", "url"])
        for n, (when, outlet, title, summary) in enumerate(NEWS):
            w.writerow([when, "{}", outlet, "bitcoin", summary, title, f"https://example.com/{n}"])
    return path


def build(
    tmp_path: Path, *extra: str
) -> tuple[dict[str, object], list[P.LabelledPair], list[P.LabelledPair]]:
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path / "set"), "--news", str(write_news(tmp_path / "news.csv")), "--mrpc", "",
         "--musk", "", "--heldout-from", "2022-06-10", "--gap-days", "2", *extra]
    )  # fmt: skip
    summary = P.build(args, words_embed)
    train, heldout = P.pair_files(tmp_path / "set")
    return summary, P.read_pairs(train), P.read_pairs(heldout)


def test_copies_are_found_across_outlets_and_checked(tmp_path: Path) -> None:
    _, train, heldout = build(tmp_path, "--hand-labelled", "")
    copies = {(p.a_text, p.b_text) for p in train + heldout if p.kind == "cross_outlet"}
    assert copies == {
        ("Binance Labs launches $500M fund for Web3", "Binance Labs launches $500M Web3 fund"),
        (
            "Celsius pauses withdrawals citing extreme market conditions",
            "Celsius pauses withdrawals amid extreme market conditions",
        ),
    }  # the two Coinbase rows are one outlet: not a cross-outlet copy
    assert all(p.label == 1 for p in train + heldout if p.source == "rewrite")
    assert {p.source for p in train} >= {"crypto_news", "rewrite", "edit"}
    assert any(p.label == 0 for p in train) and any(p.label == 1 for p in train)


def test_the_split_shares_no_story_and_no_text(tmp_path: Path) -> None:
    summary, train, heldout = build(tmp_path, "--hand-labelled", "")
    assert heldout and train
    assert not {p.story for p in train} & {p.story for p in heldout}
    texts = lambda ps: {t for p in ps for t in (p.a_text, p.b_text)}  # noqa: E731
    assert not texts(train) & texts(heldout)
    assert all("Celsius" in p.b_text or "Ethereum" in p.b_text for p in heldout)  # stories from 10 June on
    assert "Kraken adds staking for Polkadot" not in texts(train) | texts(
        heldout
    )  # in the gap before the cut
    meta = json.loads((tmp_path / "set" / "meta.json").read_text())
    assert set(meta["sources"]) == {"crypto_news", "rewrite", "edit"}
    assert "held out" in meta["split"]["rule"] and meta["split"]["heldout_from"] == "2022-06-10"
    assert meta["train"]["pairs"] == len(train) and summary["heldout"] == meta["heldout"]  # type: ignore[index]
    assert "## Split" in (tmp_path / "set" / "README.md").read_text()


def test_rows_behind_the_hand_labelled_pairs_are_left_out(tmp_path: Path) -> None:
    hand = tmp_path / "hand.csv"
    hand.write_text(
        "a_text,b_text,label,kind,origin\n"
        "Binance Labs launches $500M fund for Web3,Binance Labs launches $500M Web3 fund,1,cross_outlet,"
        "crypto_news rows 0 and 1 (x; y)\n"
    )
    summary, train, heldout = build(tmp_path, "--hand-labelled", str(hand))
    assert not [p for p in train + heldout if "Binance" in p.a_text + p.b_text]
    assert summary["check"]["hand_labelled_found"] == 1  # type: ignore[index]  # the rule finds that copy


def test_mrpc_pairs_are_read_and_untokenised(tmp_path: Path) -> None:
    tsv = tmp_path / "mrpc.tsv"
    tsv.write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        '1\t1\t2\tAmrozi accused his brother , whom he called " the witness " , of lying .\t'
        "He accused his brother .\n"
        "0\t3\t4\tYucaipa owned Dominick 's before selling the chain in 1998 .\t"
        "Yucaipa bought Dominick 's in 1995 .\n"
    )
    got = P.mrpc_pairs(tsv, 2, random.Random(0))
    assert sorted(p.label for p in got) == [0, 1]
    assert "Yucaipa owned Dominick's before selling the chain in 1998." in {p.b_text for p in got}
    assert all(p.source == "mrpc" and p.story.startswith("mrpc:") for p in got)


def test_feedback_duplicates_and_distinct_signals_become_pairs(tmp_path: Path) -> None:
    def example(sid: str, text: str, at_s: int, label: str) -> str:
        return json.dumps(
            {"story": {"id": sid, "text": text, "published_at_ms": at_s * 1000}, "label": label}
        )

    path = tmp_path / "feedback.jsonl"
    path.write_text(
        "\n".join(
            [
                example("s1", "SEC approves spot Ether ETFs", 0, "approved"),
                example("s2", "BREAKING: SEC approves spot $ETH ETFs", 60, "duplicate"),
                example("s3", "Ether ETF outflows reach $300M", 600, "rejected"),
                example("s4", "Solana halts block production", 700, "approved"),
            ]
        )
        + "\n"
    )
    got = {(p.a_text, p.b_text, p.label, p.kind) for p in P.feedback_pairs(path)}
    assert ("SEC approves spot ETH ETFs", "SEC approves spot Ether ETFs", 1, "feedback_duplicate") in got
    assert ("Ether ETF outflows reach $300M", "SEC approves spot Ether ETFs", 0, "feedback_distinct") in got
    assert not [g for g in got if "Solana" in g[0]]  # no shared asset: not compared


def test_pair_files_round_trip_gzipped_and_refuse_a_plain_folder(tmp_path: Path) -> None:
    pair = P.LabelledPair('a, "quoted"\nline', "b", 1, "x", "rewrite", "news:1", "row 1")
    (tmp_path / "s").mkdir()
    P.write_pairs(tmp_path / "s" / "train.csv.gz", [pair])
    P.write_pairs(tmp_path / "s" / "heldout.csv", [pair])
    train, heldout = P.pair_files(tmp_path / "s")
    assert P.read_pairs(train) == [pair] == P.read_pairs(heldout)
    assert P.digest(train) == P.digest(heldout)
    with pytest.raises(SystemExit, match="not a pair set"):
        P.pair_files(tmp_path)
