# Entry points named in README.md. `make demo` sets everything up and runs the main job; `make check` lints and
# type-checks; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_INDEX := index
QUESTION ?= How many days per week may staff work remotely?

.PHONY: install demo check test test-fast bench clean-index

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the CPU build: anything that pulls an unpinned torch would fetch a multi-GB CUDA build.
install: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,eval]"

demo: install
	$(BIN)/rag ingest examples/corpus
	$(BIN)/rag search "$(QUESTION)" -k 3
	$(BIN)/rag ask "$(QUESTION)"

# The gate: lint, formatting and types of the package (settings in pyproject.toml). Run before the tests.
check: install
	$(BIN)/ruff check rag
	$(BIN)/ruff format --check rag
	$(BIN)/mypy rag

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not integration"

clean-index:
	rm -rf $(DEMO_INDEX)/*
