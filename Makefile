# xlab: two commands set everything up on a fresh machine.
#   make demo   create .venv, install, run the main job on embedded defaults
#   make test   create .venv if needed, run the default test suite (6.3 min on 2 quiet cores, 2026-12-03)
# Also: make test-slow (tests marked slow), make lint, make bench (all benchmarks), make ui, make docs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Ray 2.60 turns token auth on for local clusters; clients must say so too. Be explicit everywhere.
export RAY_AUTH_MODE ?= token
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
export RAY_USAGE_STATS_ENABLED := 0
# mkdocs-material prints a multi-line notice about its successor on every build unless told not to.
export NO_MKDOCS_2_WARNING := 1
# Ray job drivers and workers started from here run `python`: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# Debian packages the project needs (installed when missing and running as root):
# git for run provenance; EGL/OSMesa (Mesa) for headless MuJoCo rendering.
SYSTEM_PACKAGES := git libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6
# Training seed of `make demo` (the README's table is over SEED=0, 1, 2).
SEED ?= 0

.PHONY: demo test test-slow test-all lint bench ui docs sysdeps venv clean corpora

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

sysdeps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$missing; \
	  else echo "missing system packages: $$missing (run: sudo apt-get install $$missing)"; exit 1; fi; \
	fi

# The RT-X pipeline on a laptop: scripted demos of two robots -> RT-1-X trained by 2 Ray Train workers
# -> served by Ray Serve to simulator actors -> success rates (tests/jobs/test_rtx_demo.py runs the
# same three commands at the smallest size).
demo: $(STAMP)
	$(BIN)/xlab run collect_demos --preset demo
	$(BIN)/xlab run train_policy --preset demo --seed $(SEED)
	$(BIN)/xlab run eval_policy --preset demo --policy models:/rt1x-policy@best-sim
	@echo
	@echo "Results are in MLflow ($$(pwd)/mlflow.db). Open them with:  $(BIN)/xlab ui   (http://127.0.0.1:5000)"
	@echo "or compare runs in the terminal:   $(BIN)/xlab runs eval_policy   /   $(BIN)/xlab runs train_policy"

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# The documentation site (mkdocs, material theme) from docs/ into site/; strict: broken links fail.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict
	@echo "Open site/index.html, or serve it: $(BIN)/mkdocs serve"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/optim_step.py
	$(BIN)/python benchmarks/train_loop.py
	$(BIN)/python benchmarks/env_steps.py
	$(BIN)/python benchmarks/rlds_pipeline.py
	$(BIN)/python benchmarks/policy_train.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/serving_ws.py --ingress direct
	$(BIN)/python benchmarks/serving_ws.py --ingress proxy
	$(BIN)/python benchmarks/lm_train.py

# Offline text corpora for LLM pretraining (xlab.corpora): installs the Debian packages that hold
# them, then builds each corpus (cached) under data/corpora. Smoke runs need none of this: the
# `python` and `man-en` corpora exist on a fresh machine.
CORPORA ?= code english man-de man-fr gettext-de
CORPUS_BYTES ?= 10e6
corpora: $(STAMP)
	@cmd="$$($(BIN)/python -m xlab.corpora.debian --corpora $(CORPORA))"; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -q && $$cmd; else sudo apt-get update -q && sudo $$cmd; fi
	$(BIN)/python -m xlab.corpora $(CORPORA) --root data/corpora --max-bytes $(CORPUS_BYTES)

ui: $(STAMP)
	$(BIN)/xlab ui

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
