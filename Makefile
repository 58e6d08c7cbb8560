# Phoenix: one entry point for building, testing and running the stack.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
STATE_DIR ?= $(CURDIR)/.state/dev

.PHONY: all venv otelcol system-deps test test-unit lint bench dev-up dev-down demo clean

all: venv otelcol

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

## Build bin/otelcol-phoenix from deploy/otelcol/builder-config.yaml (instant when up to date)
otelcol:
	bash scripts/build-otelcol.sh

system-deps:
	bash scripts/system-deps.sh

## Install everything the suite needs, then run all of it
test: venv system-deps
	@if command -v go >/dev/null 2>&1; then bash scripts/build-otelcol.sh && \
	(cd deploy/otelcol/keeplistprocessor && go test ./...); \
	else echo "go not found: the collector tests will skip (fail under CI=true); get Go from https://go.dev/doc/install"; fi
	$(PY) -m pytest

## The unit layer only: no database, no subprocess (well under a minute)
test-unit: venv
	$(PY) -m pytest tests/unit -q

bench: venv otelcol
	$(PY) benchmarks/queue.py
	$(PY) benchmarks/contracts.py
	$(PY) benchmarks/render.py
	$(PY) benchmarks/agent.py
	$(PY) benchmarks/fleet.py
	$(PY) benchmarks/ship_queue.py
	$(PY) benchmarks/analysis.py

clean:
	rm -rf $(VENV) .cache bin .state

## The whole stack in the background (state, logs and pids under .state/dev)
dev-up: venv otelcol
	$(PY) scripts/devstack.py up

dev-down:
	@if [ -x $(PY) ]; then $(PY) scripts/devstack.py down; else $(PYTHON) scripts/devstack.py down; fi

## On a fresh clone: build what is missing, start the stack, run the operations guide's workflow
demo: dev-up
	bash scripts/demo.sh
