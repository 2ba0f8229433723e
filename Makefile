# Two commands matter: `make demo` (the main job on the example face) and `make test`.
# Both bring the project virtual environment .venv up to date first.

PYTHON_BOOTSTRAP ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: setup demo test addon bench bench-dataset bench-cluster bench-preview example clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[blender,test]"
	@touch $(STAMP)

# Fetch the scanned face (menpo3d sdist, BSD-3-Clause) and build example_scenes/cache/james.blend.
example: setup
	$(PY) -m backend example

demo: setup
	$(PY) -m backend demo --out $(OUT)/demo

test: setup
	$(PY) -m pytest -q

addon: setup
	$(PY) -m backend addon --out dist

bench-dataset: setup
	$(PY) -m backend bench-dataset

# Local vs a local Ray cluster: overhead ratio, per-sample transfer, driver write rate (docs/cluster.md).
bench-cluster: setup
	$(PY) -m backend bench-cluster

bench: setup
	$(PY) -m backend bench

bench-preview: setup
	$(PY) benchmarks/bench_preview.py

clean:
	rm -rf build dist out kernels/build
