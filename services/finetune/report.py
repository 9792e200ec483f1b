"""The before/after report of a fine-tuned embedder, written beside the model (report.json, report.md and the
plots), and `tapewatch finetune report --model DIR --pairs DIR` to write it again for any folder.

For the base model and the fine-tuned one, on the held-out split of the pair set and on the hand-labelled
pairs of tests/data/dedup_pairs.csv (whose rows the pair builder keeps out of training): precision,
recall and F1 of the full dedup rule (services/evals/dedup.py, the code behind `tapewatch eval dedup`), the
share of positives and of negatives whose cosine falls in the ambiguous middle, per kind, and a plot of
every pair's cosine by label with the thresholds marked.

Thresholds: the configured ones (0.75 / 0.50) first. Then, for each model, the pair of thresholds that
gives the best F1 of the full rule on a fixed sample of the training split (never the held-out pairs),
fewer ambiguous pairs breaking ties, and the held-out figures at those thresholds.

`serve` is true when the fine-tuned model decides better than the base model at the configured thresholds
(what the dedup service runs with): a higher F1 of the full rule on the held-out split, and no lower F1 on
the hand-labelled pairs. The ambiguous share is reported beside it (`ambiguous_lower`), not part of the
rule: a hard negative that the base model put above the duplicate threshold (called a copy outright) and
the fine-tuned one moves down into the middle (the second look decides) is a better decision that raises
that share. Embedding
throughput of both models is measured in the same run (the same texts, batch 32, alternating rounds, the
best of each), since the fine-tuned model must serve as fast as the base.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from services.dedup.rule import Thresholds
from services.dedup.second_look import compare, extract
from services.dedup.text import for_embedding
from services.evals.dedup import Pair, cosine_pairs, evaluate, load_pairs, plot
from services.finetune.pairs import HAND_LABELLED, optional_path, pair_files, read_pairs

THRESHOLD_SAMPLE = 1500  # training pairs the thresholds are chosen on (crypto pairs, fixed seed)
SPEED_TEXTS = 256
SPEED_ROUNDS = 3


def choose_thresholds(
    pairs: Sequence[Pair], similarities: Sequence[float], min_anchors: int = 2
) -> Thresholds:
    """The (new, duplicate) thresholds with the best F1 of the full rule on these pairs; ties: fewer
    ambiguous pairs, then the thresholds nearest the configured ones."""
    s = np.round(np.asarray(similarities, dtype=np.float64), 6)
    y = np.array([p.label for p in pairs], dtype=bool)
    looks = [compare(extract(p.a_text), extract(p.b_text)) for p in pairs]
    clear = np.array([not c.conflicts for c in looks])
    agree = clear & np.array([c.anchors >= min_anchors for c in looks])
    default = Thresholds()
    best: tuple[float, float, float] | None = None
    chosen = default
    for new in np.arange(0.30, 0.701, 0.02):
        for dup in np.arange(new + 0.04, 0.961, 0.02):
            middle = (s > new) & (s < dup)
            verdict = ((s >= dup) & clear) | (middle & agree)
            tp = float(np.sum(verdict & y))
            precision = tp / max(1.0, float(np.sum(verdict)))
            recall = tp / max(1.0, float(np.sum(y)))
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            key = (
                round(f1, 4),
                -float(np.mean(middle)),
                -abs(new - default.new) - abs(dup - default.duplicate),
            )
            if best is None or key > best:
                best, chosen = key, Thresholds(round(float(dup), 2), round(float(new), 2), min_anchors)
    return chosen


def _pairs(rows: Sequence[Any]) -> list[Pair]:
    return [Pair(r.a_text, r.b_text, r.label, r.kind) for r in rows]


def _embed(encoder: Any, texts: list[str]) -> dict[str, npt.NDArray[np.float32]]:
    out: dict[str, npt.NDArray[np.float32]] = {}
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        out.update(zip(chunk, encoder.encode(chunk), strict=True))
    return out


def speed(encoders: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    """Texts/s of each encoder on the same texts at batch 32: rounds alternate, the best round counts."""
    best = dict.fromkeys(encoders, 0.0)
    for _ in range(SPEED_ROUNDS):
        for name, encoder in encoders.items():
            started = time.perf_counter()
            for i in range(0, len(texts), 32):
                encoder.encode(texts[i : i + 32])
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    out: dict[str, Any] = {f"{k}_texts_per_s": round(v, 1) for k, v in best.items()}
    names = list(encoders)
    if len(names) == 2:
        out["ratio"] = round(best[names[1]] / best[names[0]], 3)
    return out | {"texts": len(texts), "batch": 32, "rounds": SPEED_ROUNDS}


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("precision", "recall", "f1", "ambiguous_fraction_pos", "ambiguous_fraction_neg")
    out = {k: report[k] for k in keys}
    amb = (
        report["ambiguous_fraction_pos"] * report["positives"]
        + report["ambiguous_fraction_neg"] * report["negatives"]
    )
    out["ambiguous_fraction"] = round(amb / report["pairs"], 4)
    return out


def write(
    model: Path,
    base: Path,
    train_file: Path,
    heldout_file: Path,
    info: dict[str, Any],
    hand: Path | None = HAND_LABELLED,
    plots: bool = True,
) -> dict[str, Any]:
    """Evaluate base and fine-tuned, write report.json, report.md and the plots into `model`; the summary."""
    from services.model_server.embedder import Encoder

    sets: dict[str, list[Pair]] = {"heldout": load_pairs(heldout_file)}
    if hand and hand.exists():
        sets["hand_labelled"] = load_pairs(hand)
    crypto = [p for p in read_pairs(train_file) if p.source != "mrpc"]
    sample = random.Random(0).sample(crypto, min(THRESHOLD_SAMPLE, len(crypto)))
    train_pairs = _pairs(sample)
    texts = sorted(
        {for_embedding(t) for ps in [*sets.values(), train_pairs] for p in ps for t in (p.a_text, p.b_text)}
    )
    encoders = {"base": Encoder(base), "finetuned": Encoder(model)}
    default = Thresholds()
    result: dict[str, Any] = {
        "version": info.get("version"),
        "base": str(base),
        "model": str(model),
        "finetune": {
            k: info.get(k)
            for k in ("device", "records", "steps", "train_seconds", "pairs_per_s", "texts_per_s")
        },
        "thresholds": {"configured": _thr(default)},
        "sets": {
            name: {"file": str(heldout_file if name == "heldout" else hand), "pairs": len(ps)}
            for name, ps in sets.items()
        },
        "plots": {},
    }
    for name, encoder in encoders.items():
        vectors = _embed(encoder, texts)
        chosen = choose_thresholds(train_pairs, cosine_pairs(train_pairs, vectors))
        result["thresholds"][f"chosen_on_train_{name}"] = _thr(chosen)
        for set_name, ps in sets.items():
            sims = cosine_pairs(ps, vectors)
            full = evaluate(ps, sims, default, mistakes=10)
            again = evaluate(ps, sims, chosen, mistakes=0)
            result["sets"][set_name][name] = {
                "configured": _summary(full),
                "chosen": _summary(again),
                "per_kind": full.get("per_kind", {}),
                "mistakes": full["mistakes"],
            }
            if plots:
                path = model / "plots" / f"{set_name}_{name}.png"
                who = f"base {_name(base)}" if name == "base" else f"fine-tuned {info.get('version')}"
                title = f"{set_name}: {len(ps)} pairs, {who}"
                plot(ps, sims, default, path, title)
                result["plots"][f"{set_name}_{name}"] = str(path.relative_to(model))
    result["speed"] = speed(encoders, texts[:SPEED_TEXTS])
    held = result["sets"]["heldout"]
    b, f = held["base"]["configured"], held["finetuned"]["configured"]
    by_hand = result["sets"].get("hand_labelled")
    result["serve"] = f["f1"] > b["f1"] and (
        by_hand is None or by_hand["finetuned"]["configured"]["f1"] >= by_hand["base"]["configured"]["f1"]
    )
    ambiguous = {
        name: [s[m]["configured"]["ambiguous_fraction"] for m in ("base", "finetuned")]
        for name, s in result["sets"].items()
    }
    result["ambiguous_lower"] = {name: after < before for name, (before, after) in ambiguous.items()}
    (model / "report.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (model / "report.md").write_text(markdown(result))
    return {
        "serve": result["serve"],
        "heldout": {"base": b, "finetuned": f},
        "hand_labelled": {
            k: v["configured"] for k, v in result["sets"].get("hand_labelled", {}).items() if k in encoders
        },
        "speed": result["speed"],
        "finetune": result["finetune"],
        "report": str(model / "report.md"),
    }


def _name(folder: Path) -> str:
    return folder.parent.name if folder.name == "model" else folder.name


def _thr(t: Thresholds) -> dict[str, float]:
    return {"new": t.new, "duplicate": t.duplicate, "min_anchors": t.min_anchors}


def markdown(r: dict[str, Any]) -> str:
    ft = r["finetune"]
    lines = [
        f"# Embedder fine-tuning report: {r['version']}",
        "",
        f"Base: `{r['base']}`. Fine-tuned on {ft['records']} training records in {ft['steps']} steps on "
        f"{ft['device']}: {ft['train_seconds']} s, {ft['pairs_per_s']} pairs/s "
        f"({ft['texts_per_s']} texts/s).",
        "",
        f"**Serve: {'yes' if r['serve'] else 'no'}** (configured thresholds: a higher F1 than the base "
        "model on the held-out split, and no lower F1 on the hand-labelled pairs). Smaller ambiguous share "
        "than the base model: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in r.get("ambiguous_lower", {}).items())
        + ".",
        "",
    ]
    for set_name, s in r["sets"].items():
        lines += [
            f"## {set_name} ({s['pairs']} pairs, `{s['file']}`)",
            "",
            "| model | thresholds | precision | recall | F1 "
            "| ambiguous (pos) | ambiguous (neg) | ambiguous (all) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for model in ("base", "finetuned"):
            for which in ("configured", "chosen"):
                t = r["thresholds"]["configured" if which == "configured" else f"chosen_on_train_{model}"]
                m = s[model][which]
                lines.append(
                    f"| {model} | {which} {t['new']:.2f}/{t['duplicate']:.2f} | {m['precision']:.3f} | "
                    f"{m['recall']:.3f} | {m['f1']:.3f} | {m['ambiguous_fraction_pos']:.3f} | "
                    f"{m['ambiguous_fraction_neg']:.3f} | {m['ambiguous_fraction']:.3f} |"
                )
        kinds = sorted(set(s["base"]["per_kind"]) | set(s["finetuned"]["per_kind"]))
        if kinds:
            lines += [
                "",
                "| kind | pairs | accuracy base | accuracy fine-tuned "
                "| mean cosine base | mean cosine fine-tuned "
                "| in the middle base | in the middle fine-tuned |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for k in kinds:
                b, f = s["base"]["per_kind"].get(k, {}), s["finetuned"]["per_kind"].get(k, {})
                lines.append(
                    f"| {k} | {b.get('pairs', f.get('pairs'))} | {b.get('accuracy', '-')} "
                    f"| {f.get('accuracy', '-')} | "
                    f"{b.get('mean_similarity', '-')} | {f.get('mean_similarity', '-')} | "
                    f"{b.get('ambiguous', '-')} | {f.get('ambiguous', '-')} |"
                )
        for model in ("base", "finetuned"):
            key = f"{set_name}_{model}"
            if key in r["plots"]:
                lines += ["", f"![{key}]({r['plots'][key]})"]
        lines.append("")
    sp = r["speed"]
    lines += [
        "## Speed",
        "",
        f"Embedding, {sp['texts']} texts at batch {sp['batch']}, best of {sp['rounds']} alternating rounds: "
        "base "
        f"{sp.get('base_texts_per_s')} texts/s, fine-tuned {sp.get('finetuned_texts_per_s')} texts/s "
        f"(ratio {sp.get('ratio')}).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tapewatch finetune report", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="a fine-tuned model folder")
    parser.add_argument("--pairs", type=Path, required=True, help="its pair set directory")
    parser.add_argument("--base", type=Path, help="the base model folder (default: the one in finetune.json)")
    parser.add_argument("--hand-labelled", type=optional_path, default=HAND_LABELLED)
    args = parser.parse_args(argv)
    info = (
        json.loads((args.model / "finetune.json").read_text())
        if (args.model / "finetune.json").exists()
        else {}
    )
    base = args.base or Path(info.get("base") or "")
    if not base.is_dir():
        raise SystemExit("give --base: the base model folder")
    train_file, heldout_file = pair_files(args.pairs)
    info.setdefault(
        "version",
        (args.model / "VERSION").read_text().strip()
        if (args.model / "VERSION").exists()
        else args.model.name,
    )
    for k in ("device", "records", "steps", "train_seconds", "pairs_per_s", "texts_per_s"):
        info.setdefault(k, None)
    print(json.dumps(write(args.model, base, train_file, heldout_file, info, args.hand_labelled), indent=2))
    return 0


def serve_main(argv: list[str]) -> int:
    """Exit 0 and print the folder when its report says it decides better than the base (`make setup`)."""
    parser = argparse.ArgumentParser(prog="tapewatch finetune serve", description=serve_main.__doc__)
    parser.add_argument("--model", type=Path, required=True)
    args = parser.parse_args(argv)
    model = args.model.expanduser().resolve()
    path = model / "report.json"
    if not (model / "VERSION").exists() or not path.exists():
        print(f"{model}: no fine-tuned model with a report", file=sys.stderr)
        return 1
    report = json.loads(path.read_text())
    if not report.get("serve"):
        held = report["sets"]["heldout"]
        print(
            f"{model}: does not decide better than the base model (F1, held-out and hand-labelled): "
            f"{json.dumps(held['finetuned']['configured'])} against {json.dumps(held['base']['configured'])}",
            file=sys.stderr,
        )
        return 1
    print(model)
    return 0
