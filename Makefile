# pyactors — the two set-up commands are `make demo` and `make test`.
# Each creates .venv if missing, builds the native core (release) into it, then runs.

VENV   ?= .venv
PY     := $(VENV)/bin/python
BUILT  := $(VENV)/.pyactors-built
BENCHED := $(VENV)/.pyactors-bench-deps
RUST_SOURCES := Cargo.toml Cargo.lock rust_core/Cargo.toml $(shell find rust_core/src -name '*.rs' 2>/dev/null)

.PHONY: help demo test test-rs test-py lint build bench soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "maturin>=1.9,<2"

$(BUILT): $(PY) $(RUST_SOURCES) pyproject.toml
	$(VENV)/bin/maturin develop --release --locked --extras test,lint -q
	@touch $@

# The benchmarks' baselines (LangGraph and its savers) are installed only for `make bench`.
$(BENCHED): $(BUILT)
	$(VENV)/bin/maturin develop --release --locked --extras test,lint,bench -q
	@touch $@

build: $(BUILT) ## Build the native core (release) into .venv

demo: $(BUILT) ## Run the main job
	$(PY) -m pyactors.demo

test: $(BUILT) lint test-rs test-py ## lint, cargo test, then pytest

test-rs: ## The Rust crate's tests (no Python needed)
	cargo test --locked -p pyactors-core

lint: $(BUILT) ## ruff, mypy --strict, stubtest of the native module, clippy, rustfmt
	$(VENV)/bin/ruff check pyactors tests benches
	$(VENV)/bin/ruff format --check pyactors tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest pyactors._core
	cargo fmt --all --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --all-targets --features python -- -D warnings

test-py: $(BUILT) ## The Python tests, with line coverage of pyactors/workflow (at least 95%)
	$(PY) -m pytest -q --cov=pyactors.workflow --cov-report=term:skip-covered --cov-fail-under=95

bench: $(BENCHED) ## Benchmarks (not timed tests): prints medians, p99, ratios
	$(PY) benches/bench_store.py
	$(PY) benches/bench_actors.py
	$(PY) benches/bench_workflow.py

SOAK_KILLS ?= 10000
soak: $(BUILT) ## The SIGKILL crash harness with 10,000 kills (SOAK_KILLS=n for another count); prints the counts
	PYACTORS_CRASH_ITERATIONS=$(SOAK_KILLS) $(PY) -m pytest tests/crash/test_sigkill.py -q -s --timeout=0 -p no:cacheprovider

clean: ## Remove build outputs and the venv
	rm -rf target $(VENV) pyactors/_core*.so
