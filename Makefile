# The only entry point: every target creates or updates .venv from pyproject.toml first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
sources := ingress worker shared sandbox demoshop scripts tests migrations

.PHONY: run test lint format bench chaos services clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@$(BIN)/python -m scripts.run

# Every test but the fault suite runs on TEST_WORKERS processes (each with a database and queue
# names of its own); then the fault suite alone, since its scenarios restart the broker and the
# database everyone shares.
TEST_WORKERS ?= 2

test: $(STAMP)
	@scripts/test-tools.sh
	@$(BIN)/python -m pytest --ignore=tests/e2e -n $(TEST_WORKERS)
	@$(BIN)/python -m pytest tests/e2e

lint: $(STAMP)
	@$(BIN)/ruff check $(sources)
	@$(BIN)/ruff format --check $(sources)
	@$(BIN)/mypy

format: $(STAMP)
	@$(BIN)/ruff check --fix $(sources)
	@$(BIN)/ruff format $(sources)

bench: $(STAMP)
	@$(BIN)/python -m pytest tests/bench -p no:randomly -s --timeout=1800 -o addopts="" -o testpaths=tests/bench

chaos: $(STAMP)
	@CHAOS_FULL=1 $(BIN)/python -m pytest tests/e2e -s --timeout=3600

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
