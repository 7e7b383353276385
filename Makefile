# streamer: local stack, tests, demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
# Marks a venv with the project installed; redone when pyproject.toml changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv up down status test unit lint format typecheck demo chaos bench clean-stack

help:
	@echo "make demo    bring the stack up, run the demo pipeline, leave the dashboard (streamer serve) running"
	@echo "make test    set up .venv, bring the stack up, run the whole test suite"
	@echo "make unit    the tests that need no Kafka or PostgreSQL (fast loop; integration and slow tests deselected)"
	@echo "make lint    ruff check + ruff format --check;  make format  applies the formatter"
	@echo "make typecheck  mypy over streamer/"
	@echo "make up      start Kafka + PostgreSQL (no Docker), create topics, migrate (idempotent)"
	@echo "make down    stop what make up started from this checkout"
	@echo "make status  what is running"
	@echo "make venv    create .venv and install streamer with test and bench extras"
	@echo "make bench   end-to-end benchmark (bench/e2e.py; BENCH_ARGS=--quick for a smoke run), then bench.quality"
	@echo "make chaos   the chaos drill: kills, broker and PostgreSQL restarts and outages, a slow database, poison records, rebalances (bench/chaos.py; CHAOS_ARGS=...)"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: streamer needs Python 3.11+, $(PYTHON) is " + sys.version.split()[0])'
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[test,bench,lint]'
	@touch $(STAMP)

up: venv
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

status:
	@scripts/stack.sh status

test: up
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

# The fast loop: no stack needed. Integration tests are those that request the broker or database fixtures.
unit: venv
	$(VENV)/bin/pytest -q -m "not integration and not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: venv
	$(VENV)/bin/mypy

# The main job end to end: streamer run + 50,000 corpus events, then a summary read back.
demo: up
	$(VENV)/bin/python scripts/demo.py

# Fault-injection drill (bench/chaos.py): kills, broker and PostgreSQL restarts and outages, a slow database,
# poison records, a rebalance; figures in bench/results/chaos.{json,md}.
# Options: make chaos CHAOS_ARGS="--events 20000 --kills 3 --db-outage-seconds 30".
chaos: up
	$(VENV)/bin/python bench/chaos.py $(CHAOS_ARGS)

# End-to-end benchmark on the local stack (~10 min); results in bench/results/. BENCH_ARGS=--quick for a smoke run.
# Then the model-quality tables on ../shared/data/loghub (~1 min; skipped with a note when the data is absent).
bench: up
	$(VENV)/bin/python bench/e2e.py $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.quality

# Stop the stack and delete its data (broker log, jars stay cached in ~/.m2).
clean-stack: down
	rm -rf .stack
