"""The pair set shipped in tests/data/finetune: sources named, a clean split."""

from __future__ import annotations

import json
from pathlib import Path

from services.dedup.text import for_embedding
from services.evals.dedup import load_pairs
from services.finetune.pairs import HAND_LABELLED, pair_files, read_pairs

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "finetune"


def _texts(pairs: list) -> set[str]:  # type: ignore[type-arg]
    return {for_embedding(t).lower() for p in pairs for t in (p.a_text, p.b_text)}


def test_every_source_is_named_with_its_licence_and_method() -> None:
    meta = json.loads((SHIPPED / "meta.json").read_text())
    assert set(meta["sources"]) >= {"crypto_news", "rewrite", "edit", "mrpc"}
    for source in meta["sources"].values():
        assert source["file"] and source["licence"] and source["how"]
    assert "read by hand" in meta["check"]["hand_checked"] and meta["check"]["accepted"] > 300
    assert "held out" in meta["split"]["rule"]
    readme = (SHIPPED / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in meta["sources"])
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 600_000


def test_train_and_held_out_share_no_story_and_no_text() -> None:
    train_file, heldout_file = pair_files(SHIPPED)
    train, heldout = read_pairs(train_file), read_pairs(heldout_file)
    assert len(train) > 2000 and len(heldout) > 400
    assert not {p.story for p in train} & {p.story for p in heldout}
    assert not _texts(train) & _texts(heldout)
    kinds = {p.kind for p in heldout}
    assert {
        "cross_outlet",
        "direction",
        "numbers",
        "entity_swap",
        "action",
        "follow_up",
        "same_topic",
    } <= kinds
    assert {p.label for p in heldout} == {0, 1} and {p.label for p in train} == {0, 1}
    assert load_pairs(heldout_file)  # `tapewatch eval dedup --pairs` reads it as it is


def test_the_hand_labelled_pairs_stay_out_of_training() -> None:
    train_file, _ = pair_files(SHIPPED)
    hand = {for_embedding(t).lower() for p in load_pairs(HAND_LABELLED) for t in (p.a_text, p.b_text)}
    assert not hand & _texts(read_pairs(train_file))
