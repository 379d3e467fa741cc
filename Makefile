# Two commands for a newcomer: `make demo` and `make test`. Both set up `.venv/` first (idempotent).
PYTHON ?= python3.11
# the demo's head: `make demo MODEL=kernel` trains the kernel-based IKNE instead
MODEL  ?= transformer
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEPS   := $(VENV)/.deps-stamp
EXT    := $(VENV)/.ext-stamp
REQS   := $(wildcard requirements/*.txt)
CSRC   := $(shell find ops/csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' 2>/dev/null)

.PHONY: env test demo clean-env

env: $(EXT)

# Third-party stack; re-runs only when a requirement file changes.
$(DEPS): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q pip==26.3
	$(PIP) install -r requirements/build.txt
	# mmcv 2.1.0's setup.py imports pkg_resources (gone from setuptools >= 70); torch 2.13 wants >= 77 back.
	$(PIP) install "setuptools<70"
	MMCV_WITH_OPS=1 $(PIP) install --no-build-isolation -r requirements/mmcv.txt
	$(PIP) install "setuptools>=77"
	$(PIP) install -r requirements/runtime.txt -r requirements/tests.txt
	$(PIP) install --no-deps -r requirements/mmdet3d.txt
	$(PY) -c "import mmdet3d.datasets, mmdet3d.models, mmdet3d.evaluation"
	touch $@

# This package and its C++ extension; re-runs when the op sources or setup.py change.
$(EXT): $(DEPS) setup.py $(CSRC)
	$(PIP) install --no-build-isolation --no-deps -e .
	touch $@

test: env
	$(PY) -m pytest -q tests

demo: env
	PYTHON=$(PY) MODEL=$(MODEL) bash tools/demo.sh

clean-env:
	rm -rf $(VENV)
