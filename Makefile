# Two entry points: `make demo` and `make test`. Each creates .venv and installs the pinned tree first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1

.PHONY: demo demo-live test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nudge demo

# The demo through the live path: a local KRaft broker and PostgreSQL, the workers and the scheduler as
# docker-compose.yml declares them (engine/live/demo.py).
demo-live: $(STAMP)
	$(BIN)/python -m engine.live.postgres install
	$(BIN)/python -m engine.live.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m engine.live.postgres install
	$(BIN)/python -m engine.live.broker fetch
	bash tools/browser/install.sh
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/refit.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/stream.py

clean:
	rm -rf $(VENV) .nudge .nudge-live .pytest_cache
