# The two commands of the README: `make demo` (main job on synthetic data) and `make test`.
# Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO := runs/demo

.PHONY: demo test lint install clean

$(BIN)/kelp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/kelp

demo: install
	@test -f $(DEMO)/data/metadata.csv || $(BIN)/kelp data synth --out $(DEMO)/data --tiles 200 --seed 0
	$(BIN)/kelp data check $(DEMO)/data --out $(DEMO)/tile_stats.csv
	$(BIN)/kelp data folds $(DEMO)/data --out $(DEMO)/folds.csv
	$(BIN)/kelp build-features $(DEMO)/data --folds $(DEMO)/folds.csv --out $(DEMO)/features --workers 2

lint: install
	$(BIN)/ruff check kelp tests benchmarks
	$(BIN)/ruff format --check kelp tests benchmarks
	$(BIN)/mypy

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -n auto

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
