# Developer entry points. Everything runs from the project's venv (VENV, default .venv), created by
# `make install` with the `test` and `dev` extras, so tool versions are those pinned in pyproject.toml.
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

install:  ## venv + editable install with the test and dev extras + git hooks
	test -x $(PY) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,dev]'
	$(BIN)/pre-commit install --hook-type pre-commit --hook-type pre-push

lint:  ## ruff check (rules and per-file ignores in pyproject.toml)
	$(BIN)/ruff check .

format-check:  ## ruff format --check: reports only, not enforced yet (see CONTRIBUTING.md)
	-$(BIN)/ruff format --check .

typecheck:  ## mypy with the pydantic plugin (files and baseline in pyproject.toml)
	$(PY) -m mypy

test-fast:  ## unit tests without the slow Dagster-job/CLI tests and without the end-to-end ones
	$(PY) -m pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

test:  ## the whole suite, as CI runs it (.ci/run)
	$(PY) -m pytest $(PYTEST_ARGS)

check-defs:  ## dg check defs: the Dagster definitions load (uses [tool.dg] in pyproject.toml)
	$(BIN)/dg check defs

bench:  ## the stage benchmark (BENCH_ARGS, default --records 100000); see benchmarks/run.py
	$(PY) -m benchmarks $(BENCH_ARGS)

check: lint typecheck test-fast check-defs  ## what to run before pushing
