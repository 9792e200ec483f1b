"""`tapewatch finetune --pairs DIR --out DIR [--epochs N] [--base DIR]`: contrastive fine-tuning of the
embedder on a pair set (tapewatch finetune pairs), with FlagEmbedding's own trainer.

What is trained: FlagEmbedding's encoder-only embedder (`EncoderOnlyEmbedderRunner`: the model, its
InfoNCE loss with in-batch and hard negatives, its dataset and collator, its Hugging Face trainer with a
progress bar), plus a calibration term (calibrated_runner). Each training query is an item text, its
positives the other texts of its story, its hard negatives the label-0 texts made or mined against that
story that the second look cannot tell apart (records()), topped up with random headlines of other
stories when a story has fewer than `group_size - 1`. In-batch negatives are the other queries'
passages, so the order is laid out by us: no batch holds two queries of one story (the trainer reads the
records in that order: train_sampling_strategy="sequential"). Texts go through the dedup service's own
preparation (services/dedup/text.py) first, as they will when served.

Base model: the bundled all-MiniLM-L6-v2 by default (mean pooling, trained and served mean-pooled), or any
sentence-transformers / FlagEmbedding folder (`--base`, e.g. BGE-M3: CLS pooling, detected the way the
model server detects it). On a machine with a CUDA GPU the same command trains there (bf16 where the GPU
has it); on a CPU it trains in float32 on every core.

The output folder is a model the model server loads by configuration (TAPEWATCH_EMBEDDER_MODEL=DIR): the
weights and tokenizer, the base's sentence-transformers files (1_Pooling/config.json keeps the pooling),
VERSION (a hash of base, training pairs and settings: the same inputs give the same version, and a
second run with the same version does nothing unless --force), finetune.json (how it was made, how long
it took, pairs/s) and the evaluation report beside it (services/finetune/report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.dedup.second_look import compare, extract
from services.dedup.text import for_embedding
from services.finetune.pairs import LabelledPair, digest, pair_files, read_pairs

TRAINER_VERSION = 1  # bump when the training recipe changes: it is part of the model's version
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32  # queries per step; each brings group_size passages
    group_size: int = 3  # 1 positive + 2 hard negatives per query
    learning_rate: float = 4e-5
    temperature: float = 0.05  # sentence-transformers trained MiniLM with scale 20
    warmup_ratio: float = 0.1
    max_length: int = 128  # as the model server embeds
    seed: int = 13
    all_negatives: bool = False  # train on the edits the second look settles too (records())
    # The calibration term: positives pulled above `positive_floor`, hard negatives pushed below
    # `negative_ceiling` (the dedup rule's 0.75 / 0.50 with a margin), weighted by `calibration`.
    calibration: float = 8.0
    positive_floor: float = 0.82
    negative_ceiling: float = 0.40


@dataclass
class Record:
    story: str
    query: str
    pos: list[str]
    neg: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"query": self.query, "pos": self.pos, "neg": self.neg}


SECOND_LOOK_KINDS = frozenset({"numbers", "entity_swap", "zh_numbers", "ko_numbers"})


def left_to_second_look(p: LabelledPair) -> bool:
    """An edited negative the second look settles: other numbers or another name (whatever the names), or
    any edit it contradicts (approves against delays)."""
    return p.kind in SECOND_LOOK_KINDS or bool(compare(extract(p.a_text), extract(p.b_text)).conflicts)


def records(
    pairs: list[LabelledPair], group_size: int, rng: random.Random, all_negatives: bool = False
) -> list[Record]:
    """One record per positive pair (item -> the other texts of its story, hard negatives of the story),
    and one per story that has negatives but no positive pair (the story text is its own positive).

    Edited negatives the second look settles (left_to_second_look) are not trained on unless
    `all_negatives`: the rule calls them new at any cosine, and MiniLM does not take a one-word edit from
    0.9 to below 0.50; it only moves it, and with it every such edit, from above the duplicate threshold
    into the ambiguous middle (measured on the held-out split: entity swaps from 0.77 to 0.66 on average,
    ambiguous 22 -> 43 of 89, when unknown-name swaps were trained on). The embedder learns what the second
    look cannot read: copies across outlets and platforms, another action, a follow-up, a look-alike
    story. The builder still makes every kind, and the held-out split judges them all."""
    texts: dict[str, set[str]] = defaultdict(set)
    negatives: dict[str, set[str]] = defaultdict(set)
    story_of: dict[str, str] = {}
    positives: list[tuple[str, str, str]] = []
    for p in pairs:
        a, b = for_embedding(p.a_text), for_embedding(p.b_text)
        if not a or not b or a == b:
            continue
        if p.label == 1:
            texts[p.story] |= {a, b}
            story_of.setdefault(a, p.story)
            story_of.setdefault(b, p.story)
            positives.append((p.story, a, b))
    for p in pairs:
        a, b = for_embedding(p.a_text), for_embedding(p.b_text)
        if p.label == 0 and a and b and a != b:
            texts[p.story].add(b)
            if p.source == "edit" and not all_negatives and left_to_second_look(p):
                continue
            negatives[p.story].add(a)
            if a in story_of and story_of[a] != p.story:  # a mined negative: b is a negative of a's story too
                negatives[story_of[a]].add(b)
    out = [
        Record(s, a, sorted(texts[s] - {a} - negatives[s]) or [b], sorted(negatives[s]))
        for s, a, b in positives
    ]
    with_positives = {s for s, _, _ in positives}
    out += [
        Record(s, min(texts[s]), [min(texts[s])], sorted(negatives[s]))
        for s in negatives
        if s not in with_positives
    ]
    pool = sorted({t for ts in texts.values() for t in ts})
    for r in out:
        own = texts[r.story] | negatives[r.story]
        while len(r.neg) < group_size - 1:
            t = rng.choice(pool)
            if t not in own and t not in r.neg:
                r.neg.append(t)
    return out


def epoch_order(recs: list[Record], batch_size: int, rng: random.Random) -> list[Record]:
    """One epoch of records in full batches (the trainer cuts the list every `batch_size`) where no batch
    holds two records of one story. Batches are cut from the records ordered by length (with jitter, so
    less padding), then shuffled. Records that fill no whole batch sit this epoch out (at most a batch's
    worth plus the leftovers of crowded stories; another epoch's jitter brings them in)."""

    def length(r: Record) -> float:
        return max(len(t) for t in (r.query, *r.pos, *r.neg)) * rng.uniform(0.8, 1.25)

    pending = sorted(recs, key=length)
    batches: list[list[Record]] = []
    while len(pending) >= batch_size:
        batch: list[Record] = []
        seen: set[str] = set()
        rest = []
        for r in pending:
            if len(batch) < batch_size and r.story not in seen:
                batch.append(r)
                seen.add(r.story)
            else:
                rest.append(r)
        if len(batch) < batch_size:
            break
        batches.append(batch)
        pending = rest
    rng.shuffle(batches)
    return [r for b in batches for r in b]


def version(base: Path, train_file: Path, config: TrainConfig) -> str:
    h = hashlib.sha256()
    h.update(f"trainer {TRAINER_VERSION} {json.dumps(asdict(config), sort_keys=True)}".encode())
    h.update(digest(train_file).encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        f = base / name
        if f.exists():
            h.update(f"{name} {f.stat().st_size}".encode())
    h.update((base / "config.json").read_bytes() if (base / "config.json").exists() else b"")
    return f"{_base_name(base)}-crypto-{h.hexdigest()[:12]}"


def _base_name(base: Path) -> str:
    return (base.parent.name if base.name == "model" else base.name).replace("_", "-")


def default_base() -> Path:
    from services.model_server.embedder import default_model

    return default_model()


def fine_tune(train_file: Path, base: Path, out: Path, config: TrainConfig) -> dict[str, Any]:
    """Train into `out` (which must not exist); return what finetune.json records."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from FlagEmbedding.finetune.embedder.encoder_only.base import (
        EncoderOnlyEmbedderDataArguments,
        EncoderOnlyEmbedderModelArguments,
        EncoderOnlyEmbedderTrainingArguments,
    )

    from services.model_server.embedder import detect_pooling

    rng = random.Random(config.seed)
    recs = records(read_pairs(train_file), config.group_size, rng, config.all_negatives)
    if not recs:
        raise SystemExit(f"{train_file}: no usable training pairs")
    batch_size = min(config.batch_size, len({r.story for r in recs}))
    ordered = [r for _ in range(config.epochs) for r in epoch_order(recs, batch_size, rng)]
    pooling = detect_pooling(base)
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="tapewatch-finetune-") as work:
        data = Path(work) / "train.jsonl"
        with data.open("w", encoding="utf-8") as f:
            for r in ordered:
                f.write(json.dumps(r.as_json(), ensure_ascii=False) + "\n")
        steps = len(ordered) // batch_size
        training_args = EncoderOnlyEmbedderTrainingArguments(
            output_dir=str(out),
            num_train_epochs=1,  # the epochs are laid out in the data, in story-safe order
            per_device_train_batch_size=batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=max(1, int(steps * config.warmup_ratio)),
            temperature=config.temperature,
            sentence_pooling_method=pooling,
            normalize_embeddings=True,
            train_sampling_strategy="sequential",
            use_cpu=not gpu,
            bf16=gpu and torch.cuda.is_bf16_supported(),
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, steps // 20),
            seed=config.seed,
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        data_args = EncoderOnlyEmbedderDataArguments(
            train_data=[str(data)],
            cache_path=str(Path(work) / "cache"),
            train_group_size=config.group_size,
            query_max_len=config.max_length,
            passage_max_len=config.max_length,
        )
        model_args = EncoderOnlyEmbedderModelArguments(model_name_or_path=str(base))
        if not gpu:
            torch.set_num_threads(os.cpu_count() or 1)
        runner = calibrated_runner(config)(
            model_args=model_args, data_args=data_args, training_args=training_args
        )
        logging.getLogger("FlagEmbedding").setLevel(logging.WARNING)
        started = time.perf_counter()
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):  # the trainer prints its logs
            # FlagEmbedding's collator passes max_length with padding=True (it truncates before): harmless.
            warnings.filterwarnings("ignore", message=".*max_length. is ignored when .padding.=.True.")
            runner.run()
        seconds = time.perf_counter() - started
        history = [
            {"step": h["step"], "loss": round(h["loss"], 4)}
            for h in runner.trainer.state.log_history
            if "loss" in h
        ]
    (out / "training_args.bin").unlink(missing_ok=True)  # a pickle nobody needs to load
    for path in out.iterdir():
        if path.is_file():
            path.chmod(0o644)  # the weights are saved owner-only; a server under another account reads them
    for name in SENTENCE_TRANSFORMERS_FILES:
        src = base / name
        if src.is_dir():
            shutil.copytree(src, out / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, out / name)
    texts_per_record = 1 + config.group_size
    return {
        "device": torch.cuda.get_device_name(0) if gpu else f"cpu ({os.cpu_count()} cores)",
        "pooling": pooling,
        "records": len(recs),
        "stories": len({r.story for r in recs}),
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "pairs_per_s": round(len(ordered) / seconds, 2),  # a pair: a query with its positive (and negatives)
        "texts_per_s": round(len(ordered) * texts_per_record / seconds, 1),
        "loss": history,
    }


def calibrated_model(config: TrainConfig) -> type[Any]:
    """FlagEmbedding's encoder-only model with the calibration term added to its InfoNCE loss.

    InfoNCE only ranks: once a hard negative sits a little below its positive it stops moving, and "Celsius
    pauses withdrawals" against "Celsius pauses withdrawals; CEO steps down" stays near 0.9, where the rule
    calls it a copy. The dedup rule needs absolute places: copies above 0.75, other stories below 0.50. So for
    each query's own group (its positive and its hard negatives) a squared hinge pulls the positive's
    cosine above `positive_floor` and pushes each negative's below `negative_ceiling`."""
    import torch
    from FlagEmbedding.finetune.embedder.encoder_only.base import BiEncoderOnlyEmbedderModel

    class CalibratedModel(BiEncoderOnlyEmbedderModel):  # type: ignore[misc]
        def _compute_in_batch_neg_loss(self, q_reps: Any, p_reps: Any, *args: Any, **kwargs: Any) -> Any:
            scores, loss = super()._compute_in_batch_neg_loss(q_reps, p_reps, *args, **kwargs)
            group = p_reps.view(q_reps.size(0), -1, p_reps.size(-1))
            cosines = torch.einsum("bd,bgd->bg", q_reps, group)
            relu = torch.nn.functional.relu
            pull = relu(config.positive_floor - cosines[:, 0]).pow(2).mean()
            push = relu(cosines[:, 1:] - config.negative_ceiling).pow(2).mean()
            return scores, loss + config.calibration * (pull + push)

    return CalibratedModel


def calibrated_runner(config: TrainConfig) -> type[Any]:
    """FlagEmbedding's encoder-only runner, training the calibrated model."""
    from FlagEmbedding.finetune.embedder.encoder_only.base import EncoderOnlyEmbedderRunner

    model_class = calibrated_model(config)

    class CalibratedRunner(EncoderOnlyEmbedderRunner):  # type: ignore[misc]
        def load_tokenizer_and_model(self) -> Any:
            tokenizer, model = super().load_tokenizer_and_model()
            model.__class__ = model_class  # the same model and weights, the loss above
            return tokenizer, model

    return CalibratedRunner


def _replace(staging: Path, out: Path) -> None:
    """Put the finished folder in place; a server reading the old one keeps its open files."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from services.finetune import report

    train_file, heldout_file = pair_files(args.pairs)
    base = (args.base or default_base()).resolve()
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        group_size=args.group_size,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        seed=args.seed,
        calibration=args.calibration,
        all_negatives=args.all_negatives,
    )
    out: Path = args.out.expanduser().resolve()
    ver = version(base, train_file, config)
    if not args.force and (out / "VERSION").exists() and (out / "VERSION").read_text().strip() == ver:
        summary = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
        return {"out": str(out), "version": ver, "up_to_date": True, "serve": summary.get("serve")}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        made = fine_tune(train_file, base, staging, config)
        (staging / "VERSION").write_text(ver + "\n")
        info = {
            "version": ver,
            "base": str(base),
            "pairs": str(args.pairs.resolve()),
            "train_file": train_file.name,
            "train_digest": digest(train_file),
            "config": asdict(config),
            "trainer": f"FlagEmbedding EncoderOnlyEmbedderRunner, recipe {TRAINER_VERSION}",
            "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **made,
        }
        (staging / "finetune.json").write_text(json.dumps(info, indent=2) + "\n")
        summary = report.write(
            staging, base, train_file, heldout_file, info, hand=args.hand_labelled, plots=not args.no_plots
        )
        _replace(staging, out)
        summary["report"] = str(out / "report.md")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"out": str(out), "version": ver, "up_to_date": False, **summary}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from services.finetune.pairs import HAND_LABELLED, optional_path

    d = TrainConfig()
    parser.add_argument(
        "--pairs", type=Path, required=True, help="pair set directory (tapewatch finetune pairs)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--base", type=Path, help="base model folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument(
        "--group-size", type=int, default=d.group_size, help="passages per query (1 positive)"
    )
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--calibration", type=float, default=d.calibration, help="weight of the calibration term"
    )
    parser.add_argument(
        "--all-negatives", action="store_true", help="train on the edits the second look settles too"
    )
    parser.add_argument(
        "--hand-labelled", type=optional_path, default=HAND_LABELLED, help="second held-out set ('' for none)"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--force", action="store_true", help="train even when --out has this version")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tapewatch finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2), file=sys.stdout)
    return 0
