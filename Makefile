# The two commands of the README: `make demo` (main job on synthetic data) and `make test`.
# Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install clean

$(BIN)/kelp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/kelp

demo: install
	$(BIN)/kelp demo

lint: install
	$(BIN)/ruff check kelp tests benchmarks
	$(BIN)/ruff format --check kelp tests benchmarks
	$(BIN)/mypy

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -n auto

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
