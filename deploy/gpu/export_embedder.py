"""Export BGE-M3's dense embedding to ONNX for the `embedder_onnx` model.

The exported graph takes input_ids and attention_mask ([batch, seq], int64) and returns `embedding`
([batch, hidden], float32): the CLS token of the last hidden state, L2-normalised, which is how BGE-M3
defines its dense vector. Normalising inside the graph means Triton needs no Python step after the
model. Writes OUT_DIR/model.onnx, OUT_DIR/model.onnx.data (the weights; BGE-M3 in float32 is over
protobuf's 2 GB limit) and the tokenizer files: the folder deploy/gpu/launch-triton.sh links as
embedder_onnx/1 and hands to embedder_tokenizer.

    python3 deploy/gpu/export_embedder.py --model-dir /models/bge-m3 --out-dir /models/bge-m3-onnx

Needs torch, transformers, onnx and onnxscript (the torch.export-based exporter).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn


class DenseEmbedding(nn.Module):
    """An encoder (BGE-M3 is XLM-RoBERTa) -> unit-length CLS vector in float32."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(hidden[:, 0].float(), p=2.0, dim=-1)


def export(model_dir: Path, out_dir: Path, *, half: bool = False, opset: int = 18) -> Path:
    from transformers import AutoModel, AutoTokenizer

    device = "cuda" if half else "cpu"
    encoder = AutoModel.from_pretrained(model_dir)
    model = DenseEmbedding(encoder.half() if half else encoder).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sample = tokenizer(
        ["BTC spot ETF approved", "Exchange halts withdrawals pending review"],
        padding=True,
        return_tensors="pt",
    )
    args = (sample["input_ids"].to(device), sample["attention_mask"].to(device))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model,
            args,
            target,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
            opset_version=opset,
            dynamo=True,
            external_data=True,
        )
    tokenizer.save_pretrained(out_dir)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="Hugging Face BGE-M3 folder")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for model.onnx (+ weights)")
    parser.add_argument("--half", action="store_true", help="export the encoder in float16 (needs a GPU)")
    parser.add_argument("--opset", type=int, default=18)
    args = parser.parse_args(argv)
    print(export(args.model_dir, args.out_dir, half=args.half, opset=args.opset))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
