# Every target installs what it needs first: a .venv with torch pinned (torch==2.13.0, the
# CPU build where the package index offers it); where $(PYTHON) already has torch with CUDA,
# the .venv sees it and keeps it.
# Extra Hydra overrides: make train ARGS="model.depth=2 data=copy"
PYTHON ?= python3
VENV := .venv
PY ?= $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
# INSTALL=0: use $(PY) as it is (a machine with the packages but no package index).
INSTALL ?= 1
NEEDS := $(if $(filter 0,$(INSTALL)),,$(STAMP))
# torch with CUDA already installed: the venv shares it instead of pinning the CPU build.
CUDA_TORCH := $(shell $(PYTHON) -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
	2>/dev/null && echo yes)
TORCH := $(if $(CUDA_TORCH),,torch==2.13.0)
ARGS ?=
SWEEP ?= grid
SWEEP_ID ?=
JOBS ?= 2
SEEDS ?= 3
HOST ?= 127.0.0.1
PORT ?= 5000
DASHBOARD_PORT ?= 8080
# Where runs, the MLflow store and the data cache live (as the pipeline itself reads it).
OUTPUT_DIR := $(abspath $(or $(SEQ2SEQ_OUTPUT_DIR),$(CURDIR)/outputs))
TRACKING_URI ?= sqlite:///$(OUTPUT_DIR)/mlflow.db
# The Optuna studies make dashboard shows (make server prints its PostgreSQL one).
STUDIES ?= sqlite:///$(OUTPUT_DIR)/optuna.db
PYTEST_ARGS ?=
# The newest model of make train ARGS="experiment=numbers"; a sweep's best: ...@champion.
MODEL ?= models:/seq2seq-files/latest
# VERBOSE=1: every library line on the console too (else in each job's log file).
VERBOSE ?=
export SEQ2SEQ_VERBOSE := $(VERBOSE)

# Debian packages the browser and server tests need; installed when missing and apt-get can
# run (as root or through sudo), otherwise those tests skip with the reason.
SYSTEM_PACKAGES := chromium postgresql
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)

.PHONY: help install system-deps train sweep ui dashboard serve server bench results gpu-check test test-fast lint clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(if $(CUDA_TORCH),--system-site-packages) $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH),$(PY) -m pip install -q $(TORCH))
	$(PY) -m pip install -q -e ".[dev]" $(TORCH)
	touch $(STAMP)

install: $(STAMP)  ## Make .venv and install the project (skipped when nothing changed)

system-deps:  ## apt-get install Chromium and PostgreSQL for the browser and server tests
	@missing="$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
		echo "apt-get install $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
			-y -qq --no-install-recommends $$missing >/dev/null \
		|| echo "warning: could not install $$missing; the tests that need them will skip"; \
	else echo "warning: $$missing not installed and apt-get unavailable; those tests will skip"; fi

train: $(NEEDS)  ## Train one model with the default config (+ ARGS overrides)
	$(PY) -m pipeline.train $(ARGS)

sweep: $(NEEDS)  ## Run a sweep (SWEEP=grid|variants|optuna|lengths|g2p; SEEDS=3 replicates, or auto; JOBS=2 at once; SWEEP_ID= resumes)
	$(PY) -m pipeline.train -m hparams_search=$(SWEEP) seeds=$(SEEDS) \
		$(if $(filter auto,$(SEEDS)),hydra/sweeper=replicates) \
		$(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS)) \
		$(if $(SWEEP_ID),sweep_id=$(SWEEP_ID)) $(ARGS)

ui: $(NEEDS)  ## Browse the results: MLflow UI on http://127.0.0.1:5000 (HOST=, PORT=)
	$(PY) -m pipeline.tracking.store $(TRACKING_URI) --ui http://$(HOST):$(PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(PY) -m mlflow ui --app-name model-training \
		--backend-store-uri $(TRACKING_URI) --default-artifact-root file://$(OUTPUT_DIR)/mlartifacts \
		--host $(HOST) --port $(PORT)

dashboard: $(NEEDS)  ## Browse the Optuna searches: optuna-dashboard on http://127.0.0.1:8080 (STUDIES=, DASHBOARD_PORT=)
	$(PY) -m optuna_dashboard._cli $(STUDIES) --host $(HOST) --port $(DASHBOARD_PORT)

serve: $(NEEDS)  ## Serve a model over HTTP: MODEL=models:/seq2seq-files/latest (HOST=, PORT=, TRACKING_URI=)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" MLFLOW_TRACKING_URI=$(TRACKING_URI) \
		$(PY) -m mlflow models serve -m $(MODEL) --env-manager local -h $(HOST) -p $(PORT)

server: $(NEEDS)  ## Shared tracking server: mlflow server on PostgreSQL, 127.0.0.1:5000 (HOST=, PORT=)
	$(PY) -m pipeline.tracking.server --host $(HOST) --port $(PORT) $(ARGS)

bench: $(NEEDS)  ## Benchmarks: ratios measured side by side (ARGS=--full for more sizes)
	$(PY) -m bench $(ARGS)

bench-peer: $(NEEDS)  ## Against OpenNMT-py (installed into outputs/bench/peer): tok/s and accuracy (ARGS=--rounds 3)
	$(PY) -m bench.peer $(ARGS)

results: $(NEEDS)  ## Re-run the quick recipes and print each figure beside docs/results.md's
	$(PY) -m bench.results $(ARGS)

gpu-check: $(NEEDS)  ## On an NVIDIA GPU: the gpu tests and the GPU benchmark, one table
	$(PY) -m bench --gpu-check

test: lint system-deps  ## Lint and run the test suite
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: lint  ## Lint and the fast tests (no end-to-end runs): under a minute
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(NEEDS)  ## ruff
	$(PY) -m ruff check pipeline bench tests examples

clean:  ## Remove outputs (runs, MLflow store, data cache); keeps .venv
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
