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
run: export PROMETHEUS_MULTIPROC_DIR ?= $(abspath $(DATA_DIR))/prometheus

.PHONY: run test test-default install lint format check bench schemathesis schemathesis-default migrate superuser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# `make run` installs what the service needs (requirements.txt); the other targets add the test and lint tools.
RUN_STAMP := $(VENV)/.installed-run
# Where `make run`'s defaults keep the SQLite database and the filesystem broker (config/settings/environment.py).
DATA_DIR ?= .data

$(RUN_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(RUN_STAMP)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

## Install, migrate, create the admin from DJANGO_SUPERUSER_*, start web + worker + beat (honcho).
## Ctrl-C stops all three: honcho stops them and answers 130, which is how a run ends, not an error; the recipe's
## shell ignores the Ctrl-C itself, so that make does not report an interrupted recipe.
run: $(RUN_STAMP)
	mkdir -p "$(DATA_DIR)/broker/queue" "$(DATA_DIR)/broker/processed"
	rm -rf "$(PROMETHEUS_MULTIPROC_DIR)" && mkdir -p "$(PROMETHEUS_MULTIPROC_DIR)"
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py ensure_superuser
	trap '' INT; $(BIN)/honcho start -f Procfile || [ $$? -eq 130 ]

## Install and run the whole test suite: on PostgreSQL (Redis required; see README), then through `make run`'s
## defaults (test-default). PYTEST_ARGS narrows it, e.g. PYTEST_ARGS='-m "not default_path"' for PostgreSQL only.
test: $(STAMP)
	$(BIN)/python manage.py collectstatic --noinput -v0 --settings=config.settings.test
	$(BIN)/pytest --create-db $(PYTEST_ARGS)

## The default-path tests: the service started as `make run` starts it (SQLite, filesystem broker, web + worker +
## beat), driven over HTTP (tests/default_path/). Needs no PostgreSQL or Redis.
test-default: $(STAMP)
	$(BIN)/pytest -m default_path -p no:cacheprovider tests/default_path

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

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

## Fuzz every operation of the live schema: against a test server on PostgreSQL (fixed seed) and against the
## service as `make run` starts it (schemathesis-default: SQLite, filesystem broker, a fresh seed, printed). The two
## share nothing (servers, databases, report folders), so they run side by side (6 minutes instead of 9 on two
## cores), each into its own log, printed in turn; either failing fails the target.
schemathesis: $(STAMP)
	@mkdir -p .data
	@bash .ci/schemathesis > .data/schemathesis-test.log 2>&1 & fuzz_test=$$!; \
	SCHEMATHESIS_TARGET=default bash .ci/schemathesis > .data/schemathesis-default.log 2>&1 & fuzz_default=$$!; \
	wait $$fuzz_test; test_status=$$?; wait $$fuzz_default; default_status=$$?; \
	cat .data/schemathesis-test.log .data/schemathesis-default.log; \
	echo "schemathesis: test target exit $$test_status, default target exit $$default_status"; \
	[ $$test_status -eq 0 ] && [ $$default_status -eq 0 ]

schemathesis-default: $(STAMP)
	SCHEMATHESIS_TARGET=default bash .ci/schemathesis

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
