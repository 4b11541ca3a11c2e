PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup test demo clean

setup:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/python -c "import jobs, pyspark, deltalake, implicit, airflow, great_expectations, fairlearn; print('fairshelf environment ready in $(VENV)')"

test:
	$(BIN)/python -m pytest

demo:
	$(BIN)/fairshelf demo

clean:
	rm -rf lakehouse spark-warehouse .pytest_cache
