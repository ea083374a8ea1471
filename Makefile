# The front door: `make run` starts everything, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# honcho hands $PORT to the first Procfile entry (web); default it here, not in honcho (5000).
PORT ?= 8000
export PORT

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

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Django checks (production's deployment checks too), migrations in sync, schema valid.
check: $(STAMP)
	$(BIN)/python manage.py check --settings=config.settings.test
	SECRET_KEY=make-check-deploy-only-not-a-real-secret-0123456789-abcdefghijklmnop ALLOWED_HOSTS=api.example.com \
		$(BIN)/python manage.py check --deploy --fail-level WARNING --settings=config.settings.production
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
	rm -rf $(VENV) .data staticfiles .pytest_cache .ruff_cache
