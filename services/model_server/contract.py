"""The model server contract (DESIGN.md): model names and public tensors.

One source of truth for the CPU server (PyTriton), the GPU repository (model_repo/) and the client.
Shapes are per request, without the batch dimension; -1 is variable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # Triton dtype name: "BYTES", "FP32", "INT32"
    shape: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class ModelContract:
    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


EMBEDDER = ModelContract(
    name="embedder",
    inputs=(Tensor("text", "BYTES", (1,)),),
    outputs=(Tensor("embedding", "FP32", (-1,)),),  # L2-normalised
)

LLM = ModelContract(
    name="llm",
    inputs=(
        Tensor("text_input", "BYTES", (1,)),
        Tensor("max_tokens", "INT32", (1,)),
        Tensor("temperature", "FP32", (1,), optional=True),
        Tensor("guided_decoding_guide_type", "BYTES", (1,), optional=True),
        Tensor("guided_decoding_guide", "BYTES", (1,), optional=True),
    ),
    outputs=(
        Tensor("text_output", "BYTES", (-1,)),
        Tensor("sequence_length", "INT32", (-1,)),  # tokens generated, per beam: the client's tokens/s
    ),
)

MODELS = (EMBEDDER, LLM)
