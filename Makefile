# The README's two commands: `make demo` (set up + run the pipeline on the demo data) and `make test`
# (the fast tier of the tests). `make test-all` runs every tier; CI (.ci/run) runs lint, test, test-slow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# dvc runs each stage's `kdmed ...` command through the shell: it must find the venv's kdmed first.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# pip installs with --no-compile (byte-compiling all of torch, CUDA wrappers included, took ~35 of ~95 s);
# Python then writes the .pyc of what it really imports on first use, which needs bytecode writing on.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup demo real test test-all test-slow lint clean-outputs browser pacs-server pacs pacs-stop

$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kdmed needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e ".[dev]"
	@touch $@

# The page template `dvc plots show` fills (.dvc/config names it): Vega libraries inlined, so plots render
# without internet. Generated, not committed; rewritten after every install.
.dvc/plots_offline.html: $(BIN)/.installed
	$(BIN)/kdmed plots-template

setup: $(BIN)/.installed .dvc/plots_offline.html  ## create .venv with every dependency (pinned by constraints.txt)

# PROFILE=NAME runs the pipeline under profiles/NAME.yaml as a DVC experiment (`dvc exp show` lists it).
PROFILE ?=
demo: setup  ## run the whole DVC pipeline on the bundled demo data, then print the metrics table
ifeq ($(PROFILE),)
	$(BIN)/dvc repro
else
	$(BIN)/dvc exp run -n $(PROFILE) $$($(BIN)/kdmed profile profiles/$(PROFILE).yaml)
endif
	$(BIN)/kdmed summary

real: setup  ## the same stages on the real data in ../shared/data (real/dvc.yaml), then its metrics table
	@test -d ../shared/data || { echo "make real reads ../shared/data (the real scans beside this checkout); it is absent here"; exit 2; }
	$(BIN)/dvc repro real/dvc.yaml
	$(BIN)/kdmed --params real/params.yaml summary --markdown

# Debian's chromium for the browser test of the app (tests/test_browser.py): installed with apt-get when it
# is missing and this runs as root; otherwise that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/dev/null \
	      || echo "apt-get could not install chromium: the browser test will skip"; \
	  else echo "chromium is absent and cannot be installed here (needs root + apt-get): the browser test will skip"; fi; }

# Debian's Orthanc + DICOMweb plugin (a real PACS for `kdmed pacs` and tests/test_pacs.py) and dicom3tools
# (dciodvfy), installed with apt-get when missing and this runs as root; otherwise those tests skip and say why.
pacs-server:
	@command -v Orthanc >/dev/null 2>&1 && test -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb dicom3tools) >/dev/null \
	      || echo "apt-get could not install orthanc: the PACS tests will skip"; \
	  else echo "Orthanc is absent and cannot be installed here (needs root + apt-get): the PACS tests will skip"; fi; }

PACS_DIR ?= tmp/pacs
PACS_PORT ?= 8042
pacs: setup pacs-server  ## start a development Orthanc on 127.0.0.1:$(PACS_PORT) (DICOMweb at /dicom-web), PID in $(PACS_DIR)
	$(BIN)/python -m kdmed.pacs.orthanc start --dir $(PACS_DIR) --port $(PACS_PORT)

pacs-stop:  ## stop it by the PID `make pacs` wrote
	$(BIN)/python -m kdmed.pacs.orthanc stop --dir $(PACS_DIR)

# Tiers (pyproject.toml): a plain `pytest` deselects `slow` tests, and a later `-m` replaces that default.
# Real-data tests skip with a reason when ../shared/data is absent. Per-test limits: 300 s in the fast tier
# (pyproject.toml), 1200 s here (the first 30-epoch lesion test took 1147 s on a heavily shared 2-core CPU).
# CI's slow tier also stops after 75 min in all, so lint + fast tier + slow tier fit its 90 min.
SLOW_TIMEOUT_S := 1200
CI_SLOW_SESSION_S := 4500

test: setup  ## the fast tier (offline, a few minutes): every test not marked slow
	$(BIN)/python -m pytest

test-all: setup browser pacs-server  ## every test, fast and slow, with the 25 slowest listed
	$(BIN)/python -m pytest -m "" --durations=25 --timeout=$(SLOW_TIMEOUT_S)

test-slow: setup browser pacs-server  ## only the slow tier (what `test-all` adds to `test`; CI runs it after `test`)
	$(BIN)/python -m pytest -m slow --durations=25 --timeout=$(SLOW_TIMEOUT_S) --session-timeout=$(CI_SLOW_SESSION_S)

# ruff, the layer contract (.importlinter) and the generated architecture map being up to date.
lint: setup
	$(BIN)/ruff check kdmed app tests scripts
	$(BIN)/lint-imports .importlinter
	$(BIN)/python scripts/architecture.py --check

clean-outputs:  ## remove pipeline outputs (not the DVC cache)
	rm -rf data/demo data/processed models reports data/processed-real models-real reports-real dvc_plots tmp
