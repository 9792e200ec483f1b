"""Which embedder made a stored vector: its vector for one fixed text fingerprints it (size and weights).
An index that keeps vectors stores the fingerprint beside them and compares it with the embedder's own at
start: vectors of two models compared with one another give similarities that mean nothing."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PROBE_TEXT = "dedup embedder probe: Bitcoin ETF approved"
PROBE_MIN_COSINE = 0.999  # float noise across batch shapes stays far above this


def as_bytes(probe: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(probe, dtype=np.float32).tobytes()


def probe_cosine(stored: bytes, probe: npt.NDArray[np.float32]) -> float | None:
    """Cosine of the stored fingerprint and the embedder's probe vector; None when their sizes differ."""
    old = np.frombuffer(stored, dtype=np.float32)
    return float(old @ probe) if old.shape == np.shape(probe) else None


def same_embedder(stored: bytes, probe: npt.NDArray[np.float32]) -> bool:
    cosine = probe_cosine(stored, probe)
    return cosine is not None and cosine >= PROBE_MIN_COSINE
