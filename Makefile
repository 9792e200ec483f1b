# Tapewatch. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
TW := $(VENV)/bin/tapewatch

.PHONY: help setup protos run test test-unit lint typecheck bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Create .venv, build/cache the llama.cpp wheel, install the project, generate protos (idempotent)
	@bash deploy/local/setup.sh

protos: setup ## Regenerate the gRPC/protobuf package from protos/ into gen/
	@PYTHONPATH=. $(PY) -m services.runtime.protogen

run: setup ## Run the embedded default: Redis Stack + services, replaying real news (Ctrl-C stops all)
	@$(TW) run $(ARGS)

test: setup ## Run the whole test suite (starts its own Redis Stack, gRPC and model servers)
	@$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## Unit tests only (no servers)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: setup ## ruff and mypy
	@$(VENV)/bin/ruff check services quoting tests
	@$(VENV)/bin/ruff format --check services quoting tests
	@$(VENV)/bin/mypy services quoting

bench: setup ## Run the benchmarks (JSON on stdout): make bench WHAT=ingest
	@$(TW) bench $(or $(WHAT),ingest) --json

clean: ## Remove generated code and caches in the repo (keeps the cached wheels outside it)
	rm -rf gen build .pytest_cache .mypy_cache .ruff_cache
