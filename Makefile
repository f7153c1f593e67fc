# The same commands CI runs. `make run` and `make test` are the two the README starts with.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= var
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: run test coverage check lint typecheck imports audit-deps unit bench clean install

$(BIN)/hearth: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(BIN)/hearth

install: $(BIN)/hearth

## make run: initialise a demo instance in ./var (once), then serve it on 127.0.0.1. The token
## init prints is not shown: serve prints the one to use (valid 12 hours), once per start.
run: install
	@if [ ! -f $(HOME_DIR)/hearth.toml ]; then \
	  $(BIN)/hearth --home $(HOME_DIR) init --quiet --host $(HOST) --port $(PORT) >/dev/null && \
	  $(BIN)/hearth --home $(HOME_DIR) demo load --patients 300; \
	fi
	$(BIN)/hearth --home $(HOME_DIR) serve --host $(HOST) --port $(PORT) --issue-admin-credential

## make test: the whole suite, after the static checks.
test: check
	$(BIN)/python -m pytest -n auto --dist loadgroup $(PYTEST_ARGS)

## make coverage: the whole suite under branch coverage (several times slower), then the
## report, whole and for the safeguard packages.
coverage: check
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest -n auto --dist loadgroup --cov --cov-report= $(PYTEST_ARGS)
	$(BIN)/python scripts/coverage_report.py

check: lint typecheck imports audit-deps

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

audit-deps: install
	$(BIN)/python scripts/audit_deps.py

bench: install
	$(BIN)/python -m bench

lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --extra dev pyproject.toml -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
