# Every entry point of the project. `make` (or `make help`) lists them.
.DEFAULT_GOAL := help
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
UV_VERSION := 0.13.8
SERVICE := services/auth-service
TOOLS := $(CURDIR)/.tools
VENV := $(CURDIR)/.venv
UV := $(TOOLS)/uv/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
# uv prints a warning per extra index it cannot use; keep the output about the project.
export UV_NO_PROGRESS := 1

##@ Getting started

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
	  /^[a-zA-Z0-9_.-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: run
run: venv ## Serve on 127.0.0.1:8000 (embedded PostgreSQL under .data/ unless AUTH_DATABASE_URL is set)
	AUTH_DATA_DIR=$${AUTH_DATA_DIR:-$(CURDIR)/.data} $(VENV)/bin/auth-service serve --migrate --seed-demo --banner

.PHONY: test
test: venv tools ## Run the whole test suite (AUTH_TEST_DATABASE_URL names a server, else an embedded one)
	@$(MAKE) --no-print-directory bench-tools || echo "make test: no wrk; the benchmark harness test is skipped" >&2
	@$(MAKE) --no-print-directory image-engine || echo "make test: no podman; the container checks are skipped" >&2
	@$(MAKE) --no-print-directory browser || echo "make test: no chromium; the Locust web UI test is skipped" >&2
	$(VENV)/bin/pytest

##@ Development

.PHONY: venv
venv: $(VENV)/.synced ## Create or update .venv from the lock file

$(VENV)/.synced: $(SERVICE)/pyproject.toml $(SERVICE)/uv.lock | $(UV)
	cd $(SERVICE) && $(UV) sync --locked --extra embedded --python $(PYTHON)
	touch $@

$(UV):
	$(PYTHON) -m venv $(TOOLS)/uv
	$(TOOLS)/uv/bin/pip install --quiet uv==$(UV_VERSION)

.PHONY: lock
lock: | $(UV) ## Re-resolve the lock file after changing dependencies
	cd $(SERVICE) && $(UV) lock

.PHONY: lint
lint: venv ## ruff (lint and format check), mypy, hadolint on the Dockerfile
	$(VENV)/bin/ruff check $(SERVICE) tests bench reliability loadtests podman
	$(VENV)/bin/ruff format --check $(SERVICE) tests bench reliability loadtests podman
	$(VENV)/bin/mypy $(SERVICE)/src
	$(VENV)/bin/hadolint $(SERVICE)/Dockerfile

.PHONY: fmt
fmt: venv ## Format and fix what ruff can
	$(VENV)/bin/ruff format $(SERVICE) tests bench reliability loadtests podman
	$(VENV)/bin/ruff check --fix $(SERVICE) tests bench reliability loadtests podman

.PHONY: migrate
migrate: venv ## Migrate the configured (or embedded) database to head
	AUTH_DATA_DIR=$${AUTH_DATA_DIR:-$(CURDIR)/.data} $(VENV)/bin/auth-service migrate

.PHONY: clean
clean: ## Remove the environment, tools and caches (keeps .data)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

.PHONY: clean-data
clean-data: ## Remove the embedded database's data
	rm -rf .data

##@ Benchmarks

# wrk as the distribution packages it (Debian, Ubuntu): its version is the distribution's, recorded in each result.
WRK := $(TOOLS)/bin/wrk
# e.g. BENCH_ARGS="--quick" or "--endpoints verify,user_hit --servers service,ceiling"
BENCH_ARGS ?=

.PHONY: bench
bench: venv bench-tools ## Service vs baseline vs ceiling, one pinned core each, wrk on another (writes bench/results/)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

# e.g. TOPOLOGY_ARGS="--quick" or "--rounds 5"
TOPOLOGY_ARGS ?=

.PHONY: bench-topology
bench-topology: venv bench-tools ## One process against two on one address (SO_REUSEPORT), and the hashing beside the hot loop or apart (~4 min)
	$(VENV)/bin/python -m bench.topology $(TOPOLOGY_ARGS)

.PHONY: bench-tools
bench-tools: ## Put wrk in .tools/bin unless it is on PATH (apt-get download and dpkg -x: nothing installed)
	@command -v wrk >/dev/null || [ -x $(WRK) ] || TOOLS_DIR=$(TOOLS) bench/install-wrk.sh

include mk/tools.mk mk/image.mk mk/chart.mk mk/reliability.mk mk/load.mk
