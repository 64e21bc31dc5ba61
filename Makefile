# RumorDB: the two commands a fresh machine needs are `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint typecheck unit bench clean experiments

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start a local 3-node cluster on loopback (Ctrl-C stops it).
up: $(STAMP)
	$(BIN)/rumor cluster up -n 3

## ruff + mypy (strict on core/) + the whole pytest suite.
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check core live sim cli tests bench
	$(BIN)/ruff format --check core live sim cli tests bench

typecheck: $(STAMP)
	$(BIN)/mypy core live sim cli

## Micro- and system benchmarks (figures go to the closing notes, never asserted).
bench: $(STAMP)
	$(BIN)/python -m bench.core_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
