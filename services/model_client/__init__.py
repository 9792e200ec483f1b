"""Client of the model server (`embedder`, `llm`) used by the dedup and analysis services."""

from services.model_client.breaker import (
    Backoff,
    CircuitBreaker,
    ModelError,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from services.model_client.client import GenerateResult, ModelClient, QueueReading

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "GenerateResult",
    "ModelClient",
    "ModelError",
    "ModelRejected",
    "ModelTimeout",
    "ModelUnavailable",
    "QueueReading",
]
