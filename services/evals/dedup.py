"""The dedup rule on labelled pairs: precision, recall and F1 of the full rule (second look included),
and how much of each class falls in the ambiguous middle between the thresholds.

FILE is a CSV with columns a_text, b_text, label (1: same story, 0: different) and optionally kind.
Both texts go through the service's own preparation (services/dedup/text.py) and the rule decides as it
does for an item (a_text) against a story (b_text).

Embeddings: by default the embedder is loaded here with the model server's own loading code
(services/model_server/embedder.py: the folder the model server would serve, the crypto fine-tune when
`make setup` built one that beats the base model, or the folder given by --model), so any embedder folder
can be evaluated without starting a server. --server HOST:PORT embeds through a running model server
instead (what the service sees).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.dedup.rule import Decision, Thresholds, decide
from services.dedup.text import for_embedding

ENCODE_BATCH = 64


@dataclass(frozen=True)
class Pair:
    a_text: str
    b_text: str
    label: int
    kind: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", type=Path, required=True, help="CSV: a_text, b_text, label[, kind]")
    parser.add_argument("--plot", type=Path, help="draw the similarity of every pair to this PNG")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="embedder folder (default: the served one)")
    source.add_argument("--server", help="embed through a running model server at HOST:PORT")
    parser.add_argument("--duplicate-threshold", type=float, default=0.75)
    parser.add_argument("--new-threshold", type=float, default=0.50)
    parser.add_argument("--min-anchors", type=int, default=2)
    parser.add_argument("--mistakes", type=int, default=20, help="list at most this many wrong pairs")


def load_pairs(path: Path) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"a_text", "b_text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{path}: missing columns {', '.join(sorted(missing))}")
        pairs = []
        for n, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()
            if label not in ("0", "1"):
                raise SystemExit(f"{path}:{n}: label must be 0 or 1, got {label!r}")
            if not for_embedding(row["a_text"]) or not for_embedding(row["b_text"]):
                raise SystemExit(f"{path}:{n}: a text is empty after normalisation")
            pairs.append(Pair(row["a_text"], row["b_text"], int(label), (row.get("kind") or "").strip()))
    if not pairs:
        raise SystemExit(f"{path}: no pairs")
    return pairs


def _scores(decisions: Sequence[bool], labels: Sequence[int]) -> dict[str, Any]:
    tp = sum(1 for d, y in zip(decisions, labels, strict=True) if d and y == 1)
    fp = sum(1 for d, y in zip(decisions, labels, strict=True) if d and y == 0)
    fn = sum(1 for d, y in zip(decisions, labels, strict=True) if not d and y == 1)
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "accuracy": round((tp + tn) / len(labels), 4) if labels else 0.0,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def evaluate(
    pairs: Sequence[Pair], similarities: Sequence[float], thresholds: Thresholds, mistakes: int = 20
) -> dict[str, Any]:
    """The report for pairs whose cosine similarities are known (pure: no model here)."""
    decisions: list[Decision] = [
        decide(s, p.a_text, p.b_text, thresholds) for p, s in zip(pairs, similarities, strict=True)
    ]
    labels = [p.label for p in pairs]
    verdicts = [d.duplicate for d in decisions]
    full = _scores(verdicts, labels)

    def ambiguous_share(label: int) -> float:
        sims = [s for p, s in zip(pairs, similarities, strict=True) if p.label == label]
        return round(sum(thresholds.ambiguous(s) for s in sims) / len(sims), 4) if sims else 0.0

    report: dict[str, Any] = {
        "pairs": len(pairs),
        "positives": sum(labels),
        "negatives": len(labels) - sum(labels),
        "precision": full["precision"],
        "recall": full["recall"],
        "f1": full["f1"],
        "accuracy": full["accuracy"],
        "confusion": full["confusion"],
        "ambiguous_fraction_pos": ambiguous_share(1),
        "ambiguous_fraction_neg": ambiguous_share(0),
        "thresholds": {
            "duplicate": thresholds.duplicate,
            "new": thresholds.new,
            "min_anchors": thresholds.min_anchors,
        },
        # What the embedding alone says (cosine >= duplicate threshold): what the second look adds.
        "cosine_only": _scores([s >= thresholds.duplicate for s in similarities], labels),
        "rules": dict(Counter(d.rule_name for d in decisions)),
    }
    kinds = sorted({p.kind for p in pairs if p.kind})
    if kinds:
        per_kind = {}
        for kind in kinds:
            idx = [i for i, p in enumerate(pairs) if p.kind == kind]
            scores = _scores([verdicts[i] for i in idx], [labels[i] for i in idx])
            per_kind[kind] = {
                "pairs": len(idx),
                "positives": sum(labels[i] for i in idx),
                "accuracy": scores["accuracy"],
                "precision": scores["precision"],
                "recall": scores["recall"],
                "f1": scores["f1"],
                "mean_similarity": round(float(np.mean([similarities[i] for i in idx])), 4),
                "ambiguous": sum(thresholds.ambiguous(similarities[i]) for i in idx),
            }
        report["per_kind"] = per_kind
    wrong = [i for i, (d, y) in enumerate(zip(verdicts, labels, strict=True)) if d != bool(y)]
    report["mistakes"] = [
        {
            "a_text": pairs[i].a_text[:160],
            "b_text": pairs[i].b_text[:160],
            "label": labels[i],
            "kind": pairs[i].kind,
            "similarity": round(float(similarities[i]), 4),
            "rule": decisions[i].rule_name,
            "explanation": decisions[i].explanation,
        }
        for i in wrong[:mistakes]
    ]
    return report


def cosine_pairs(pairs: Sequence[Pair], vectors: dict[str, npt.NDArray[np.float32]]) -> list[float]:
    return [float(vectors[for_embedding(p.a_text)] @ vectors[for_embedding(p.b_text)]) for p in pairs]


def embed_local(texts: list[str], model: Path | None) -> tuple[dict[str, npt.NDArray[np.float32]], str]:
    from services.model_server.embedder import Encoder

    encoder = Encoder(model)
    out: dict[str, npt.NDArray[np.float32]] = {}
    for start in range(0, len(texts), ENCODE_BATCH):
        chunk = texts[start : start + ENCODE_BATCH]
        out.update(zip(chunk, encoder.encode(chunk), strict=True))
    return out, str(encoder.folder)


def embed_server(texts: list[str], address: str) -> tuple[dict[str, npt.NDArray[np.float32]], str]:
    from services.model_client import ModelClient

    async def go() -> npt.NDArray[np.float32]:
        async with ModelClient(address, embed_batch=ENCODE_BATCH, deadline_s=120) as client:
            return await client.embed(texts)

    return dict(zip(texts, asyncio.run(go()), strict=True)), f"model server at {address}"


def plot(
    pairs: Sequence[Pair], similarities: Sequence[float], thresholds: Thresholds, path: Path, title: str
) -> None:
    """Every pair as a dot at its cosine similarity, one row per label, the two thresholds marked and the
    ambiguous middle shaded."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("--plot needs matplotlib: .venv/bin/pip install matplotlib") from exc
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.axvspan(
        thresholds.new, thresholds.duplicate, color="#f2e6b3", alpha=0.6, label="ambiguous: second look"
    )
    for label, colour, name in ((0, "#d1495b", "different story (0)"), (1, "#00798c", "same story (1)")):
        xs = [s for p, s in zip(pairs, similarities, strict=True) if p.label == label]
        ys = label + rng.uniform(-0.18, 0.18, len(xs))
        ax.scatter(xs, ys, s=22, alpha=0.8, color=colour, edgecolors="none", label=f"{name}: {len(xs)} pairs")
    ax.axvline(thresholds.new, color="#555", ls="--", lw=1)
    ax.axvline(thresholds.duplicate, color="#111", ls="-", lw=1.2)
    ax.text(thresholds.new, 1.42, f" new <= {thresholds.new:.2f}", fontsize=8, va="top", ha="right")
    ax.text(thresholds.duplicate, 1.42, f" duplicate >= {thresholds.duplicate:.2f}", fontsize=8, va="top")
    ax.set_yticks([0, 1], ["different", "same"])
    ax.set_ylim(-0.5, 1.5)
    low = min(min(similarities), thresholds.new) - 0.05
    ax.set_xlim(max(-1.0, low), 1.01)
    ax.set_xlabel("cosine similarity of the pair's embeddings")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _model_name(model: str) -> str:
    path = Path(model)
    return path.parent.name if path.name == "model" else path.name  # packaged models sit in .../<name>/model


def run(args: argparse.Namespace) -> dict[str, Any]:
    thresholds = Thresholds(args.duplicate_threshold, args.new_threshold, args.min_anchors)
    pairs = load_pairs(args.pairs)
    texts = sorted({for_embedding(t) for p in pairs for t in (p.a_text, p.b_text)})
    if args.server:
        vectors, model = embed_server(texts, args.server)
    else:
        vectors, model = embed_local(texts, args.model)
    similarities = cosine_pairs(pairs, vectors)
    report = {
        "eval": "dedup",
        "file": str(args.pairs),
        "model": model,
        **evaluate(pairs, similarities, thresholds, args.mistakes),
    }
    if args.plot:
        plot(
            pairs,
            similarities,
            thresholds,
            args.plot,
            f"{args.pairs.name}: {len(pairs)} pairs, embedder {_model_name(model)}",
        )
        report["plot"] = str(args.plot)
    return report
