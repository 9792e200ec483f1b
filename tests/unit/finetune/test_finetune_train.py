"""Training records, their story-safe order, the model's version, and thresholds chosen on training pairs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.evals.dedup import Pair
from services.finetune.pairs import LabelledPair, write_pairs
from services.finetune.report import choose_thresholds
from services.finetune.train import TrainConfig, calibrated_model, epoch_order, records, version

PAIRS = [
    LabelledPair("🚨 Binance lists $SOL", "Binance lists SOL", 1, "x", "rewrite", "news:1", ""),
    LabelledPair(
        "Binance to list SOL, exchange says",
        "Binance lists SOL",
        1,
        "cross_outlet",
        "crypto_news",
        "news:1",
        "",
    ),
    LabelledPair("Binance delists SOL", "Binance lists SOL", 0, "direction", "edit", "news:1", ""),
    LabelledPair("Binance ends its SOL promotion", "Binance lists SOL", 0, "action", "edit", "news:1", ""),
    LabelledPair(
        "Kraken halts withdrawals",
        "Kraken pauses withdrawals",
        1,
        "cross_outlet",
        "crypto_news",
        "news:2",
        "",
    ),
    LabelledPair(
        "Kraken pauses withdrawals", "Binance lists SOL", 0, "same_asset_day", "crypto_news", "news:1", ""
    ),
    LabelledPair("Fed hikes rates by 75 bp", "Fed cuts rates by 75 bp", 0, "direction", "edit", "news:3", ""),
    LabelledPair(
        "Solana outage ends", "Solana outage enters second day", 0, "follow_up", "edit", "news:4", ""
    ),
    LabelledPair(
        "Nike drops NFT sneakers", "Adidas drops NFT sneakers", 0, "entity_swap", "edit", "news:5", ""
    ),
]


def test_records_group_a_story_and_its_hard_negatives() -> None:
    recs = records(PAIRS, group_size=3, rng=random.Random(0))
    by_query = {r.query: r for r in recs}
    # Texts are prepared as the service prepares them: the X copy loses its siren and cashtag, is then the
    # story's own text, and teaches nothing.
    assert "Binance lists SOL" not in by_query
    binance = by_query["Binance to list SOL, exchange says"]
    assert binance.story == "news:1" and binance.pos == ["Binance lists SOL"]
    assert {"Binance ends its SOL promotion", "Kraken pauses withdrawals"} <= set(binance.neg)
    # Lists against delists: the second look settles it, the embedder is not pushed on it.
    assert all("Binance delists SOL" not in r.neg for r in recs)
    # A mined negative is a negative of both stories.
    assert "Binance lists SOL" in by_query["Kraken halts withdrawals"].neg
    # Stories with negatives only: the story text is its own positive.
    solana = by_query["Solana outage enters second day"]
    assert solana.pos == ["Solana outage enters second day"] and solana.neg[0] == "Solana outage ends"
    assert "Fed hikes rates by 75 bp" not in by_query  # hikes against cuts: the second look's
    assert "Adidas drops NFT sneakers" not in by_query  # another name: the second look's too
    everything = {r.query: r for r in records(PAIRS, group_size=3, rng=random.Random(0), all_negatives=True)}
    assert everything["Adidas drops NFT sneakers"].neg[0] == "Nike drops NFT sneakers"
    assert "Binance delists SOL" in everything["Binance to list SOL, exchange says"].neg
    for r in recs:
        assert len(r.neg) >= 2 and r.query not in r.neg
        assert not set(r.neg) & set(r.pos)


def test_no_batch_holds_two_records_of_one_story() -> None:
    rng = random.Random(1)
    recs = [*records(PAIRS * 3, group_size=3, rng=rng), *records(PAIRS, group_size=3, rng=rng)]
    stories = {r.story for r in recs}
    ordered = epoch_order(recs, batch_size=3, rng=rng)
    # The trainer cuts the list every 3 records: each cut is a whole batch of 3 different stories.
    assert len(ordered) % 3 == 0 and len(ordered) >= len(recs) - 3 * len(stories)
    assert len({id(r) for r in ordered}) == len(ordered)
    for start in range(0, len(ordered), 3):
        assert len({r.story for r in ordered[start : start + 3]}) == 3


def test_the_version_follows_base_pairs_and_settings(tmp_path: Path) -> None:
    base = tmp_path / "all-MiniLM-L6-v2"
    base.mkdir()
    (base / "config.json").write_text('{"hidden_size": 384}')
    train = tmp_path / "train.csv"
    write_pairs(train, PAIRS)
    v = version(base, train, TrainConfig())
    assert v.startswith("all-MiniLM-L6-v2-crypto-") and v == version(base, train, TrainConfig())
    assert version(base, train, TrainConfig(epochs=1)) != v
    write_pairs(train, PAIRS[:-1])
    assert version(base, train, TrainConfig()) != v


def test_thresholds_are_chosen_for_f1_then_a_small_middle() -> None:
    pairs = [Pair(f"Story number {i}", f"Story number {i} copy", 1) for i in range(6)]
    pairs += [Pair(f"Other tale {i}", f"Unrelated note {i}", 0) for i in range(6)]
    sims = [0.9, 0.88, 0.8, 0.7, 0.66, 0.64, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55]
    chosen = choose_thresholds(pairs, sims)
    assert 0.55 <= chosen.new < 0.64 and chosen.duplicate <= 0.64  # every pair right, nothing in the middle


def test_the_calibration_term_places_copies_above_and_others_below_the_thresholds() -> None:
    import torch
    from FlagEmbedding.finetune.embedder.encoder_only.base import BiEncoderOnlyEmbedderModel

    config = TrainConfig(calibration=8.0, positive_floor=0.82, negative_ceiling=0.40)
    calibrated = calibrated_model(config)(torch.nn.Linear(2, 2), temperature=0.05)
    plain = BiEncoderOnlyEmbedderModel(torch.nn.Linear(2, 2), temperature=0.05)
    q = torch.tensor([[1.0, 0.0]])

    def losses(passages: list[list[float]]) -> tuple[float, float]:
        p = torch.tensor(passages)
        return float(calibrated._compute_in_batch_neg_loss(q, p)[1]), float(
            plain._compute_in_batch_neg_loss(q, p)[1]
        )

    mine, theirs = losses([[1.0, 0.0], [0.0, 1.0]])  # the copy at 1.0, the other story at 0.0: nothing to add
    assert mine == pytest.approx(theirs)
    mine, theirs = losses([[0.6, 0.8], [0.9, 0.43589]])  # copy at 0.6, other story at 0.9
    assert mine - theirs == pytest.approx(8.0 * ((0.82 - 0.6) ** 2 + (0.9 - 0.40) ** 2), rel=1e-4)
