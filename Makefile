# Every target installs what it needs: uv (into .tools/ if it is not on PATH), then the
# locked environment. Nothing here assumes more than python3 and make.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
MLFLEET := $(VENV)/bin/mlfleet
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Ray workers must not be re-launched through `uv run`: they use the synced venv as is.
export RAY_ENABLE_UV_RUN_RUNTIME_ENV := 0

.PHONY: help setup browser ports-tool quickstart test test-reliability test-fast lint bench bench-cli bench-validate bench-train bench-serve bench-drift bench-request-validation bench-monitor bench-fleet clean

help:
	@echo "make quickstart   validate, train and serve the example fleet end to end (local Ray)"
	@echo "make test         run the test suite"
	@echo "make test-reliability   the reliability suite alone (faults, load, hostile input)"
	@echo "make test-fast    unit tests only (no Ray; seconds)"
	@echo "make lint         ruff + mypy + import contracts (pyproject.toml)"
	@echo "make bench        every side-by-side benchmark (slow; BENCH_FLAGS=--quick: smoke)"
	@echo "make bench-validate / bench-train / bench-serve / bench-drift / bench-monitor / bench-fleet   one of them"
	@echo "make bench-cli    whole commands as a user waits for them, vs a pandera / sklearn script"

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.9"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups
	@touch $@

setup: $(VENV)/.synced

quickstart: setup
	$(VENV)/bin/python -m examples.quickstart

test: setup browser ports-tool
	$(VENV)/bin/python -m pytest tests

# The dashboard's browser test drives Debian's chromium (Playwright cannot download its own).
browser:
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y chromium \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# The exposure case lists listening ports with `ss` (iproute2; on Debian's base image, but
# installed here when missing all the same).
ports-tool:
	@command -v ss >/dev/null || $(SUDO) apt-get install -y iproute2 \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y iproute2; }

# Faults, load, hostile input and exposure against a real fleet (also part of `make test`).
test-reliability: setup ports-tool
	$(VENV)/bin/python -m pytest tests/reliability -s

test-fast: setup
	$(VENV)/bin/python -m pytest tests/unit -m "not ray and not slow"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

# Each benchmark writes benchmarks/results/<name>.json (--quick: a smoke run, written apart).
BENCH_FLAGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

bench: bench-validate bench-train bench-serve bench-drift bench-request-validation bench-monitor bench-fleet bench-cli

bench-validate: setup
	$(VENV)/bin/python benchmarks/bench_validate.py $(BENCH_FLAGS)

# Whole `mlfleet` processes (validate at 1k..5M rows, train) against the scripts they replace.
bench-cli: setup
	$(VENV)/bin/python benchmarks/bench_cli.py $(BENCH_FLAGS)

bench-request-validation: setup
	$(VENV)/bin/python benchmarks/bench_request_validation.py $(BENCH_FLAGS)

bench-train: setup
	$(VENV)/bin/python benchmarks/bench_train.py $(BENCH_FLAGS)

# The load generator: wrk, from the distribution's packages (taskset comes with util-linux).
bench-serve: setup
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y wrk \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; }
	$(VENV)/bin/python benchmarks/bench_serve.py $(BENCH_FLAGS)

# Evidently runs in its own uv environment (it needs pandas < 3), never in the project's.
bench-drift: setup
	$(VENV)/bin/python benchmarks/bench_drift.py --uv $(UV) $(BENCH_FLAGS)

# 100 models registered and served from the pool under Zipf traffic (wrk); ~15 minutes.
bench-fleet: setup
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y wrk \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y wrk; }
	$(VENV)/bin/python benchmarks/bench_fleet.py $(BENCH_FLAGS)

# A real monitor actor on a local Ray and 16 sender actors; ~2 minutes.
bench-monitor: setup
	$(VENV)/bin/python benchmarks/bench_monitor.py $(BENCH_FLAGS)

clean:
	rm -rf .mlfleet .pytest_cache
