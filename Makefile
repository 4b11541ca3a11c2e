PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup test test-fast contracts demo clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -m jobs.interfaces.environment_check  # one line per dependency; exit 1 unless all import

# The import contracts of pyproject.toml ([tool.importlinter]): layers, independent
# stages, no pyspark in the recsys layer or the downstream reader, no import cycles.
contracts:
	$(BIN)/lint-imports

# What CI runs: the contracts first, then every test, on two workers (tests/conftest.py
# says which tests go together).
test: contracts
	$(BIN)/python -m pytest -n 2

# The inner loop: contracts and the unit tests (no whole nightly run), a few minutes.
test-fast: contracts
	$(BIN)/python -m pytest tests/unit -m "not integration and not movielens"

demo:
	$(BIN)/fairshelf demo

clean:
	rm -rf lakehouse spark-warehouse spark-cluster .pytest_cache
