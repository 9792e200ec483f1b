"""The `embedder` model on the real CPU server: normalised vectors, re-posts close, unrelated stories far."""

from __future__ import annotations

import numpy as np
import pytest

from services.model_client import ModelClient

pytestmark = pytest.mark.integration


async def test_vectors_are_l2_normalised(model_client: ModelClient) -> None:
    vectors = await model_client.embed([f"Headline number {i}: ETH rallies" for i in range(40)])
    assert vectors.shape == (40, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_a_repost_scores_above_an_unrelated_headline(model_client: ModelClient) -> None:
    original, repost, unrelated = await model_client.embed(
        [
            "BREAKING: Binance halts withdrawals after hack",
            "🚨 $BNB Binance halts withdrawals after a hack!!",
            "Fed holds rates steady, signals two cuts later this year",
        ]
    )
    assert float(original @ repost) > 0.75
    assert float(original @ repost) > float(original @ unrelated) + 0.3


async def test_batched_and_single_requests_agree(model_client: ModelClient) -> None:
    texts = ["Tether mints $1B USDT", "SEC approves spot Ether ETFs"]
    together = await model_client.embed(texts)
    alone = np.concatenate([await model_client.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)
