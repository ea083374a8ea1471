# The front door: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# honcho hands $PORT to the first Procfile entry (web); default it here, not in honcho (5000).
PORT ?= 8000
export PORT
# `make run`'s web and worker processes write their Prometheus counters here, emptied before they start
# (docs/API.md §16); prometheus-client reads it from the environment, so it is exported to all of them.
run: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/.data/prometheus

.PHONY: run test lint format check bench schemathesis migrate superuser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Install, migrate, create the admin from DJANGO_SUPERUSER_*, start web + worker + beat (honcho).
run: $(STAMP)
	mkdir -p .data/broker/queue .data/broker/processed
	rm -rf "$(PROMETHEUS_MULTIPROC_DIR)" && mkdir -p "$(PROMETHEUS_MULTIPROC_DIR)"
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py ensure_superuser
	$(BIN)/honcho start -f Procfile

## Install and run the whole test suite (PostgreSQL and Redis required; see README).
test: $(STAMP)
	$(BIN)/python manage.py collectstatic --noinput -v0 --settings=config.settings.test
	$(BIN)/pytest --create-db

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Django checks, migrations in sync, schema valid.
check: $(STAMP)
	$(BIN)/python manage.py check --settings=config.settings.test
	$(BIN)/python manage.py makemigrations --check --dry-run --settings=config.settings.test
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --settings=config.settings.test > /dev/null

## Fuzz every operation of the live schema against a running test server.
schemathesis: $(STAMP)
	bash .ci/schemathesis

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

## Benchmarks (PostgreSQL, Redis; builds bench/.litellm-venv on first use); figures go to bench/README.md.
## BENCH_ARGS="--only inference" runs one scenario; "--compare --profile" adds the heartbeat comparisons.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data staticfiles .pytest_cache .ruff_cache .mypy_cache
