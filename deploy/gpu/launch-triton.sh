#!/usr/bin/env bash
# Serve `llm` and `embedder` on one GPU: fill model_repo/ into a build folder, link the embedder's
# ONNX export in as embedder_onnx/1, and run Triton (KServe v2 gRPC) on it.
#
#   MODELS_DIR=/models deploy/gpu/launch-triton.sh [key=value ...]
#
# MODELS_DIR holds llm/ (from build-engine.sh) and bge-m3/ (from export_embedder.py: model.onnx,
# its weights and the tokenizer). key=value arguments override deploy/gpu/model_repo.env and
# llm/serve.env, e.g. kv_cache_free_gpu_mem_fraction=0.8. DRY_RUN=1 fills the repository and prints
# the tritonserver command instead of running it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
die() { echo "launch-triton: $*" >&2; exit 1; }

models="${MODELS_DIR:?set MODELS_DIR to the folder holding llm/ and bge-m3/}"
llm="${LLM_DIR:-$models/llm}"
bge="${BGE_M3_DIR:-$models/bge-m3}"
out="${MODEL_REPO_OUT:-$root/build/model_repo}"
PYTHON="${PYTHON:-python3}"

for path in "$llm/engine" "$llm/tokenizer" "$llm/xgrammar_tokenizer_info.json" "$bge/model.onnx"; do
  [[ -e $path ]] || die "missing $path (see deploy/gpu/README.md)"
done
# Absolute paths: Triton resolves config paths from its own working folder, the link from its own place.
llm="$(cd "$llm" && pwd)"
bge="$(cd "$bge" && pwd)"

values=(--values-file "$here/model_repo.env")
if [[ -f $llm/serve.env ]]; then values+=(--values-file "$llm/serve.env"); fi

"$PYTHON" "$root/services/model_server/repo_fill.py" --repo "$root/model_repo" --out "$out" "${values[@]}" \
  engine_dir="$llm/engine" \
  tokenizer_dir="$llm/tokenizer" \
  xgrammar_tokenizer_info_path="$llm/xgrammar_tokenizer_info.json" \
  bge_m3_tokenizer_dir="$bge" \
  "$@"
ln -sfn "$bge" "$out/embedder_onnx/1"

serve=(
  tritonserver --model-repository="$out"
  --grpc-port="${TRITON_GRPC_PORT:-8001}"
  --http-port="${TRITON_HTTP_PORT:-8000}"
  --metrics-port="${TRITON_METRICS_PORT:-8002}"
  --disable-auto-complete-config
  --strict-readiness=true
  --exit-on-error=true
)
if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf '+'; printf ' %q' "${serve[@]}"; printf '\n'
  exit 0
fi
exec "${serve[@]}"
