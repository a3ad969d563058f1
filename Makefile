# The README's two commands: `make demo` (set up + run the pipeline on the demo data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# dvc runs each stage's `kdmed ...` command through the shell: it must find the venv's kdmed first.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup demo test lint clean-outputs

$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kdmed needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

setup: $(BIN)/.installed  ## create .venv with every dependency (pinned by constraints.txt)

demo: setup  ## run the whole DVC pipeline on the bundled demo data, then print the metrics table
	$(BIN)/dvc repro
	$(BIN)/kdmed summary

test: setup  ## the test suite (offline; real-data tests skip with a reason when ../shared/data is absent)
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check kdmed app tests

clean-outputs:  ## remove pipeline outputs (not the DVC cache)
	rm -rf data/demo data/processed models reports dvc_plots tmp
