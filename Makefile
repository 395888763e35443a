# Two commands on a fresh clone: `make demo` runs a review, `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck install clean bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check reviewbot tests bench
	$(BIN)/ruff format --check reviewbot tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -n auto --dist loadfile

demo: $(STAMP)
	$(BIN)/reviewbot demo

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/filter_eval.py

clean:
	rm -rf $(VENV) build dist *.egg-info
