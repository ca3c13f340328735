# pyactors — the two set-up commands are `make demo` and `make test`.
# Each creates .venv if missing, builds the native core (release) into it, then runs.

VENV   ?= .venv
PY     := $(VENV)/bin/python
BUILT  := $(VENV)/.pyactors-built
FUZZED  := $(VENV)/.pyactors-fuzz-deps
RUST_SOURCES := Cargo.toml Cargo.lock rust_core/Cargo.toml $(shell find rust_core/src -name '*.rs' 2>/dev/null)

.PHONY: help demo test test-rs test-py lint build wheel bench soak fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "maturin>=1.9,<2"

# The dev build carries the test-only fault layer (`_core.FaultFs`); `maturin build` wheels do not.
DEV_FEATURES := --features python,fault-injection

# Stale extension modules go first: Python would import a CPython-specific one before
# the abi3 build (tests/_native_guard.py fails the run if two are found).
$(BUILT): $(PY) $(RUST_SOURCES) pyproject.toml
	rm -f pyactors/_core*.so
	$(VENV)/bin/maturin develop --release --locked $(DEV_FEATURES) --extras test,lint,bench,langgraph -q
	@touch $@

# atheris is installed only for `make fuzz`.
$(FUZZED): $(BUILT)
	$(VENV)/bin/maturin develop --release --locked $(DEV_FEATURES) --extras test,lint,bench,langgraph,fuzz -q
	@touch $@

build: $(BUILT) ## Build the native core (release) into .venv

WHEEL_DIR ?= dist
wheel: $(PY) ## Build the abi3 wheel (CPython 3.11+) and the sdist into dist/ (WHEEL_DIR=...)
	$(VENV)/bin/maturin build --release --locked --out $(WHEEL_DIR)
	$(VENV)/bin/maturin sdist --out $(WHEEL_DIR)

demo: $(BUILT) ## Run the main job
	$(PY) -m pyactors.demo

test: $(BUILT) lint test-rs test-py ## lint, cargo test, then pytest

test-rs: ## The Rust crate's tests (no Python needed)
	cargo test --locked -p pyactors-core --features fault-injection

lint: $(BUILT) ## ruff, mypy --strict, stubtest of the native module, clippy, rustfmt
	$(VENV)/bin/ruff check pyactors tests benches
	$(VENV)/bin/ruff format --check pyactors tests benches
	$(PY) -m mypy
	$(PY) -m mypy.stubtest pyactors._core
	cargo fmt --all --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --all-targets --features python -- -D warnings
	cargo clippy --locked --all-targets --features python,fault-injection -- -D warnings

test-py: $(BUILT) ## The Python tests, with line coverage of pyactors/workflow (at least 95%)
	$(PY) -m pytest -q --cov=pyactors.workflow --cov-report=term:skip-covered --cov-fail-under=95

bench: $(BUILT) ## The benchmark suite: results.json, REPORT.md and plots in bench-out/
	$(PY) -m pyactors bench --out bench-out

SOAK_KILLS ?= 10000
soak: $(BUILT) ## The SIGKILL crash harness with 10,000 kills (SOAK_KILLS=n for another count); prints the counts
	PYACTORS_CRASH_ITERATIONS=$(SOAK_KILLS) $(PY) -m pytest tests/crash/test_sigkill.py -q -s --timeout=0 -p no:cacheprovider

# Each target runs FUZZ_SECONDS; seeds come from real stores (tests/fuzz/seeds.py), and
# what the fuzzers add to the corpora stays in target/fuzz-corpus for the next run. cargo
# fuzz runs on the stable toolchain without a sanitizer (the crate forbids unsafe code);
# libFuzzer still reports panics, overflows (debug assertions are on), hangs and OOMs.
FUZZ_SECONDS ?= 600
FUZZ_CORPUS  := target/fuzz-corpus
FUZZ_TMPDIR  := $(shell test -d /dev/shm && echo /dev/shm || echo /tmp)
CARGO_FUZZ_VERSION := 0.13.2

fuzz: $(FUZZED) ## Fuzz each target FUZZ_SECONDS (default 600): cargo fuzz decode, roundtrip, open_dir; atheris store
	@cargo fuzz --version 2>/dev/null | grep -q ' $(CARGO_FUZZ_VERSION)$$' || cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	$(PY) tests/fuzz/seeds.py $(FUZZ_CORPUS)
	for t in decode roundtrip open_dir; do \
		(cd rust_core && TMPDIR=$(FUZZ_TMPDIR) cargo fuzz run --sanitizer none $$t ../$(FUZZ_CORPUS)/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || exit 1; \
	done
	$(PY) tests/fuzz/fuzz_store.py $(FUZZ_CORPUS)/store -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1

clean: ## Remove build outputs and the venv
	rm -rf target $(VENV) dist pyactors/_core*.so
