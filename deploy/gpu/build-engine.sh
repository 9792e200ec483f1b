#!/usr/bin/env bash
# Build the TensorRT-LLM engine behind the `llm` model, and what the Triton repository needs beside it.
#
#   MODEL_FAMILY=gemma HF_MODEL_DIR=/models/hf/gemma-3-4b-it MODELS_DIR=/models \
#   TRTLLM_DIR=/opt/TensorRT-LLM deploy/gpu/build-engine.sh
#
# Run it on the serving GPU model (engines are built per GPU architecture), inside the TensorRT-LLM
# container; TRTLLM_DIR is a TensorRT-LLM source checkout of the installed tensorrt_llm's version
# (its examples/ hold the checkpoint converters). DRY_RUN=1 prints the commands without running them.
#
# Writes OUT_DIR (default $MODELS_DIR/llm):
#   engine/                       trtllm-build output
#   tokenizer/                    the model's tokenizer, for preprocessing/postprocessing
#   xgrammar_tokenizer_info.json  the tokenizer as the C++ backend's guided decoding needs it
#   serve.env                     runtime values tied to this engine; launch-triton.sh reads it
set -euo pipefail

die() { echo "build-engine: $*" >&2; exit 1; }
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [[ ${DRY_RUN:-0} != 1 ]]; then "$@"; fi
}

MODEL_FAMILY="${MODEL_FAMILY:?gemma or llama}"
HF_MODEL_DIR="${HF_MODEL_DIR:?the Hugging Face model folder}"
TRTLLM_DIR="${TRTLLM_DIR:?a TensorRT-LLM source checkout matching the installed tensorrt_llm}"
OUT_DIR="${OUT_DIR:-${MODELS_DIR:?set OUT_DIR or MODELS_DIR}/llm}"
WORK_DIR="${WORK_DIR:-$OUT_DIR/.work}"
PYTHON="${PYTHON:-python3}"

DTYPE="${DTYPE:-bfloat16}"        # weights and activations when not quantised
QUANT="${QUANT:-none}"            # none | fp8 (compute capability >= 8.9: Ada, Hopper, newer) | int8_wo
SPEC="${SPEC:-none}"              # none | lookahead (no extra weights) | medusa (needs MEDUSA_DIR)
TP_SIZE="${TP_SIZE:-1}"           # launch-triton.sh serves one GPU; keep 1 unless you launch with MPI
# Sizes: a request is the prompt (instructions + JSON schema + story) plus a short JSON judgement.
MAX_BATCH_SIZE="${MAX_BATCH_SIZE:-16}"
MAX_INPUT_LEN="${MAX_INPUT_LEN:-3072}"
MAX_SEQ_LEN="${MAX_SEQ_LEN:-3584}"
MAX_NUM_TOKENS="${MAX_NUM_TOKENS:-8192}"
CALIB_DATASET="${CALIB_DATASET:-cnn_dailymail}"  # FP8 calibration: a dataset name or a local folder
CALIB_SIZE="${CALIB_SIZE:-512}"
LOOKAHEAD_W="${LOOKAHEAD_W:-4}"   # window size
LOOKAHEAD_N="${LOOKAHEAD_N:-4}"   # n-gram size
LOOKAHEAD_G="${LOOKAHEAD_G:-4}"   # verification set size
MEDUSA_HEADS="${MEDUSA_HEADS:-4}"

case $MODEL_FAMILY in gemma | llama) ;; *) die "MODEL_FAMILY must be gemma or llama, not '$MODEL_FAMILY'" ;; esac
case $QUANT in none | fp8 | int8_wo) ;; *) die "QUANT must be none, fp8 or int8_wo, not '$QUANT'" ;; esac
case $SPEC in none | lookahead | medusa) ;; *) die "SPEC must be none, lookahead or medusa, not '$SPEC'" ;; esac

compute_cap() {
  if [[ -n ${GPU_COMPUTE_CAP:-} ]]; then echo "$GPU_COMPUTE_CAP"; return; fi
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1
}
at_least() { awk -v have="$1" -v want="$2" 'BEGIN { exit !(have + 0 >= want + 0) }'; }

if [[ $QUANT == fp8 || $SPEC != none ]]; then
  cap="$(compute_cap)" || die "cannot read the GPU's compute capability (nvidia-smi); set GPU_COMPUTE_CAP"
  if [[ $QUANT == fp8 ]] && ! at_least "$cap" 8.9; then
    die "FP8 needs compute capability >= 8.9 (Ada, Hopper or newer); this GPU is $cap: use QUANT=int8_wo or none"
  fi
  if [[ $SPEC != none ]] && ! at_least "$cap" 8.0; then
    die "speculative decoding needs compute capability >= 8.0 (Ampere or newer); this GPU is $cap"
  fi
fi
if [[ $SPEC == medusa ]]; then
  [[ $MODEL_FAMILY == llama ]] || die "Medusa heads are supported for Llama-style models only"
  [[ $QUANT != fp8 ]] || die "SPEC=medusa is built here without FP8; use QUANT=none or int8_wo"
  MEDUSA_DIR="${MEDUSA_DIR:?the trained Medusa heads folder}"
fi

weight_only=()
if [[ $QUANT == int8_wo ]]; then weight_only=(--use_weight_only --weight_only_precision int8); fi
ckpt="$WORK_DIR/checkpoint"
examples="$TRTLLM_DIR/examples"

# 1. Hugging Face weights -> TensorRT-LLM checkpoint (quantised here when asked).
if [[ $SPEC == medusa ]]; then
  run "$PYTHON" "$examples/medusa/convert_checkpoint.py" --model_dir "$HF_MODEL_DIR" \
    --medusa_model_dir "$MEDUSA_DIR" --num_medusa_heads "$MEDUSA_HEADS" \
    --output_dir "$ckpt" --dtype "$DTYPE" --tp_size "$TP_SIZE" "${weight_only[@]}"
elif [[ $QUANT == fp8 ]]; then
  # FP8 weights and activations need calibration (NVIDIA ModelOpt); the KV cache is FP8 too.
  run "$PYTHON" "$examples/quantization/quantize.py" --model_dir "$HF_MODEL_DIR" --dtype "$DTYPE" \
    --qformat fp8 --kv_cache_dtype fp8 --calib_dataset "$CALIB_DATASET" --calib_size "$CALIB_SIZE" \
    --tp_size "$TP_SIZE" --output_dir "$ckpt"
elif [[ $MODEL_FAMILY == gemma ]]; then
  run "$PYTHON" "$examples/models/core/gemma/convert_checkpoint.py" --ckpt-type hf \
    --model-dir "$HF_MODEL_DIR" --output-model-dir "$ckpt" --dtype "$DTYPE" --world-size "$TP_SIZE" \
    "${weight_only[@]}"
else
  run "$PYTHON" "$examples/models/core/llama/convert_checkpoint.py" --model_dir "$HF_MODEL_DIR" \
    --output_dir "$ckpt" --dtype "$DTYPE" --tp_size "$TP_SIZE" "${weight_only[@]}"
fi

# 2. Checkpoint -> engine. In-flight batching needs the GPT attention plugin, packed (unpadded) inputs
# and the paged KV cache; paged context FMHA is what lets the runtime reuse cached prompt blocks
# (enable_kv_cache_reuse) and chunk long prompts (enable_chunked_context).
build=(
  trtllm-build --checkpoint_dir "$ckpt" --output_dir "$OUT_DIR/engine"
  --max_batch_size "$MAX_BATCH_SIZE" --max_input_len "$MAX_INPUT_LEN" --max_seq_len "$MAX_SEQ_LEN"
  --max_num_tokens "$MAX_NUM_TOKENS" --max_beam_width 1
  --gpt_attention_plugin auto --gemm_plugin auto
  --remove_input_padding enable --kv_cache_type paged
  --context_fmha enable --use_paged_context_fmha enable
  --multiple_profiles enable
)
if [[ $QUANT == fp8 ]]; then build+=(--use_fp8_context_fmha enable); fi
decoding_mode=top_k_top_p
w=0 n=0 g=0
if [[ $SPEC == lookahead ]]; then
  # The engine's draft length must equal what the runtime's (W, N, G) needs (TensorRT-LLM lookahead docs).
  w=$LOOKAHEAD_W n=$LOOKAHEAD_N g=$LOOKAHEAD_G
  draft=$(((n == 1 ? 0 : n - 2) + (w - 1 + g) * (n - 1)))
  build+=(--speculative_decoding_mode lookahead_decoding --max_draft_len "$draft")
  decoding_mode=lookahead
elif [[ $SPEC == medusa ]]; then
  build+=(--speculative_decoding_mode medusa --max_draft_len 63)
  decoding_mode=medusa
fi
run "${build[@]}"

# 3. What the Triton repository reads beside the engine.
run "$PYTHON" -c 'import sys; from transformers import AutoTokenizer; AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2])' \
  "$HF_MODEL_DIR" "$OUT_DIR/tokenizer"
run "$PYTHON" "$examples/generate_xgrammar_tokenizer_info.py" --model_dir "$HF_MODEL_DIR" --output_dir "$OUT_DIR"

serve_env="# Written by deploy/gpu/build-engine.sh for the engine in $OUT_DIR/engine
# (MODEL_FAMILY=$MODEL_FAMILY QUANT=$QUANT SPEC=$SPEC MAX_BATCH_SIZE=$MAX_BATCH_SIZE)
decoding_mode=$decoding_mode
lookahead_window_size=$w
lookahead_ngram_size=$n
lookahead_verification_set_size=$g"
if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf '%s\n' "--- $OUT_DIR/serve.env" "$serve_env"
else
  printf '%s\n' "$serve_env" > "$OUT_DIR/serve.env"
  echo "build-engine: engine, tokenizer and serve.env in $OUT_DIR"
fi
