#!/usr/bin/env bash
# Development / embedded-default set-up: .venv from a Python with a shared libpython (PyTriton needs one),
# the llama.cpp wheel built once and cached outside the repo, the project installed editable with
# its generated protos, and Redis Stack's libssl1.1. Idempotent; fast when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${TAPEWATCH_CACHE:-$HOME/.cache/tapewatch}"
wheels="$cache/wheels"
stamp=.venv/.tapewatch-setup
want="$(cat pyproject.toml deploy/local/setup.sh | sha256sum | cut -c1-16)"

# Debian packages the tests and the console need: a real browser for the console's browser test.
apt_needed=()
[[ -x /usr/bin/chromium ]] || apt_needed+=(chromium)
[[ -x /usr/bin/chromedriver ]] || apt_needed+=(chromium-driver)
if ((${#apt_needed[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${apt_needed[*]}" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >&2
  else
    echo "setup: please install Debian packages: ${apt_needed[*]} (the console's browser test needs them)" >&2
  fi
fi

install() {
  pick_python() {
    for py in ${TAPEWATCH_PYTHON:-} /usr/bin/python3.11 /usr/bin/python3; do
      [[ -x $py ]] || continue
      if "$py" -c 'import sys, sysconfig, venv; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") and sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
        echo "$py"; return 0
      fi
    done
    return 1
  }
  py=$(pick_python || true)
  if [[ -z $py ]]; then
    echo "setup: installing Debian's python3 (shared libpython, venv, headers)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-dev >&2
    py=$(pick_python) || { echo "setup: no Python 3.11 with a shared libpython found" >&2; exit 1; }
  fi

  if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sysconfig, sys; sys.exit(0 if sysconfig.get_config_var("Py_ENABLE_SHARED") else 1)'; then
    rm -rf .venv
    "$py" -m venv .venv
  fi
  pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
  "${pip[@]}" install -U "pip>=24"

  # llama-cpp-python compiles llama.cpp from source (about 13 minutes on 2 cores): build once, keep the wheel.
  llama_version=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
  if ! ls "$wheels"/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
    echo "setup: building llama-cpp-python $llama_version (once; cached in $wheels)" >&2
    mkdir -p "$wheels"
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "${pip[@]}" wheel --no-deps -w "$wheels" "llama-cpp-python==$llama_version"
  fi

  grpc_version=$(sed -n 's/.*"grpcio-tools==\([^"]*\)".*/\1/p' pyproject.toml)
  "${pip[@]}" install --find-links "$wheels" "grpcio-tools==$grpc_version"
  PYTHONPATH=. .venv/bin/python -m services.runtime.protogen
  "${pip[@]}" install --find-links "$wheels" -e ".[dev]"

  bash deploy/local/fetch-libssl.sh >/dev/null
  echo "$want" > $stamp
}

if ! [[ -f $stamp && "$(cat $stamp)" == "$want" && -d gen/tapewatch ]]; then
  install
fi

# The embedder fine-tuned on the shipped crypto pairs (tests/data/finetune), built once into the cache
# (a few minutes on 2 cores; nothing to do when its version is there). The model server serves it when
# its report says it decides better than the base model (services/finetune/report.py).
# TAPEWATCH_SKIP_FINETUNE=1 leaves it out: the base model is served.
embedder="$cache/models/embedder-crypto"
if [[ "${TAPEWATCH_SKIP_FINETUNE:-}" != 1 ]]; then
  mkdir -p "$cache/models"
  if ! [[ -f $embedder/VERSION ]]; then
    echo "setup: fine-tuning the embedder on tests/data/finetune (once; cached in $embedder)" >&2
  fi
  .venv/bin/tapewatch finetune --pairs tests/data/finetune --out "$embedder" >"$embedder.json"
  if .venv/bin/tapewatch finetune serve --model "$embedder" >/dev/null; then
    echo "setup: the model server serves the fine-tuned embedder ($embedder/report.md)" >&2
  fi
fi
echo "setup: ready (.venv, gen/, $cache)" >&2
