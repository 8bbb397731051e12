# robolake — every target installs what it needs; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROBOLAKE := $(BIN)/robolake
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
SOAK_MINUTES ?= 60
SOAK_ARGS ?=
VENV_INTEROP ?= .venv-interop
INTEROP_BIN := $(VENV_INTEROP)/bin

.PHONY: help setup demo test chaos soak-tables interop test-unit test-integration lint bench bench-memory bench-peers profile stack-up stack-down stack-status clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed ## create the venv and install robolake with its dev tools
	$(ROBOLAKE) stack install

demo: setup ## the whole pipeline end to end: stack, collector, writer, 1,000 simulated capture points
	$(ROBOLAKE) demo $(DEMO_ARGS)

test: setup lint ## lint, then every test against a private real stack (started and stopped by pytest)
	$(BIN)/pytest -m "not chaos and not interop" $(PYTEST_ARGS)

chaos: setup ## long fault runs: 30 s Kafka and MinIO outages under load, 1,000-point 10-minute soak
	$(BIN)/pytest -m chaos -s $(PYTEST_ARGS)

soak-tables: setup ## sustained run: writer + compaction service for SOAK_MINUTES (60) at 5 MB/s; files vs target, accounting
	$(BIN)/python -m robolake.bench.soak_tables --minutes $(SOAK_MINUTES) --out bench-results/soak-tables.json $(SOAK_ARGS)

# The interop suite's own venv: pyspark and DuckDB 1.5.5 with its extensions stay out of `dev`.
$(INTEROP_BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_INTEROP)
	$(INTEROP_BIN)/pip install --quiet --upgrade pip
	$(INTEROP_BIN)/pip install --quiet -e '.[interop]'
	touch $@

interop: $(INTEROP_BIN)/.installed ## Spark 4.1 and DuckDB's iceberg extension read and maintain the tables (minutes)
	$(INTEROP_BIN)/robolake stack install
	$(INTEROP_BIN)/python -m robolake.stack.spark install
	time $(INTEROP_BIN)/pytest -m interop -p no:cacheprovider tests/integration/engines $(PYTEST_ARGS)

test-unit: $(BIN)/.installed ## only the unit tests (no stack)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: setup ## only the integration tests
	$(BIN)/pytest -m "integration and not chaos and not interop" $(PYTEST_ARGS)

lint: $(BIN)/.installed ## ruff (lint + format check) and mypy --strict on services/
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy

bench: setup ## benchmarks: robolake's figures as ratios to Kafka/MinIO ceilings measured in the same run
	$(BIN)/python -m robolake.bench --out bench-results/bench.json $(BENCH_ARGS)

bench-memory: setup ## writer peak RSS vs its cap draining ~212k tiny chunks of 3,000 episodes (~7 min)
	$(BIN)/python -m robolake.bench.writer_memory --out bench-results/writer-memory.json $(BENCH_ARGS)

bench-peers: setup ## robolake next to Benthos v4.27.0 (built once, ~7 min cold): HTTP->Kafka, Kafka->S3
	$(BIN)/python -m robolake.bench.peers --out docs/performance/peers.json $(BENCH_ARGS)

PROFILE_ARGS ?= --seconds 15 --drain-mb 500
profile: setup ## py-spy flame graphs of the collector and the writer under bench-peers' load, in docs/performance/
	$(BIN)/python -m robolake.bench.peers --profile docs/performance --out bench-results/peers-profile.json $(PROFILE_ARGS)
	$(BIN)/python -m robolake.bench.profile docs/performance/collector.txt docs/performance/writer.txt

stack-up: setup ## start the local Kafka + MinIO + Prometheus stack and print its endpoints
	$(ROBOLAKE) stack up

stack-down: $(BIN)/.installed ## stop every process of the local stack
	$(ROBOLAKE) stack down

stack-status: $(BIN)/.installed ## show the local stack's processes, endpoints and logs
	$(ROBOLAKE) stack status

clean: ## remove the venv and caches of the checkers (not the stack's install cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench-results
