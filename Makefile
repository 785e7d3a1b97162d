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
	touch $@

serve: $(STAMP)
	$(BIN)/ezlink serve $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	bash scripts/install-services.sh  # Redis for the accounts tests (root only, once)
	$(BIN)/pytest $(ARGS)

bench: $(STAMP)
	bash bench/run.sh
