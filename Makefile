# benchbed — two entry points: `make demo` (install + run the quick suite here) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
# The `local` target runs the agent with `python3` from PATH: make it the interpreter this Makefile installs into,
# so the bare-metal baseline has the same libraries (numpy, torch) as the tests and the demo expect.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ssh,docker,libvirt,parquet]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: install
	$(BIN)/benchbed run

lint: install
	$(BIN)/ruff check benchbed tests benchmarks workloads
	$(BIN)/ruff format --check benchbed tests benchmarks workloads

typecheck: install
	$(BIN)/mypy benchbed

test: lint typecheck
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest tests/unit

bench: install
	$(BIN)/python benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
