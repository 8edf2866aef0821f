# Developer entry points. Everything runs from the project's venv (VENV, default .venv), created by
# `make install` with the extras CI installs plus `dev`, so tool versions are those pinned in pyproject.toml.
# `make help` lists the targets.

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?= --records 100000

.DEFAULT_GOAL := help
.PHONY: help install lint format-check typecheck test-fast test check-defs bench check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

install:  ## venv + editable install with the extras CI uses and the dev extra + git hooks
	test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,dev,s3,distributed,distributed-test]'
	$(BIN)/pre-commit install --hook-type pre-commit --hook-type pre-push

lint:  ## ruff check (rules and per-file ignores in pyproject.toml)
	$(BIN)/ruff check .

format-check:  ## ruff format --check (enforced in CI)
	$(BIN)/ruff format --check .

typecheck:  ## mypy with the pydantic plugin (files and baseline in pyproject.toml)
	$(PY) -m mypy

test-fast:  ## tests without the slow (Dagster jobs, CLI), e2e and distributed (real servers) ones
	$(PY) -m pytest -q -m "not slow and not e2e and not distributed" $(PYTEST_ARGS)

test:  ## the whole suite, as CI runs it (.ci/run; the distributed test needs PostgreSQL and Redis)
	$(PY) -m pytest $(PYTEST_ARGS)

check-defs:  ## dg check defs: the Dagster definitions load (uses [tool.dg] in pyproject.toml)
	$(BIN)/dg check defs

bench:  ## the stage benchmark (BENCH_ARGS, default --records 100000); see benchmarks/run.py
	$(PY) -m benchmarks $(BENCH_ARGS)

check: lint typecheck test-fast check-defs  ## what to run before pushing
