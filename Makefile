# django-durable: `make demo` and `make test` work on a fresh machine (they set up .venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: help venv demo test lint typecheck checks test-sqlite test-postgres docs chaos bench clean

help:
	@echo "make demo   - set up .venv, migrate the SQLite example, run a workflow through a worker crash"
	@echo "make test   - set up .venv, lint, type-check, Django checks, tests on SQLite and PostgreSQL, docs"
	@echo "make chaos  - the long reliability tier on PostgreSQL (kill -9 chaos at scale, soak)"
	@echo "make bench  - benchmarks on PostgreSQL (results in bench/results/)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy django_durable

checks: venv
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) -m django check --fail-level WARNING
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) -m django makemigrations --check --dry-run
	$(PY) manage.py check

test-sqlite: venv
	DURABLE_TEST_DB=sqlite $(BIN)/pytest $(PYTEST_ARGS)

# Runs on PostgreSQL when it answers; says so loudly when it does not, and fails
# instead when DURABLE_REQUIRE_POSTGRES=1 (CI).
test-postgres: venv
	@if $(PY) tests/postgres_available.py; then \
		DURABLE_TEST_DB=postgres $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$$DURABLE_REQUIRE_POSTGRES" = "1" ]; then \
		echo "ERROR: PostgreSQL is required (DURABLE_REQUIRE_POSTGRES=1) but not reachable." >&2; exit 1; \
	else \
		echo ""; \
		echo "################################################################"; \
		echo "###  SKIPPED: PostgreSQL is not reachable; the suite ran on   ###"; \
		echo "###  SQLite only. Set PGHOST/PGPORT/PGUSER to test on it.     ###"; \
		echo "################################################################"; \
		echo ""; \
	fi

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: lint typecheck checks test-sqlite test-postgres docs

# The long reliability tier (minutes): kill -9 chaos at scale, soak. PostgreSQL only.
chaos: venv
	DURABLE_TEST_DB=postgres $(BIN)/pytest -m chaos -s tests/reliability $(PYTEST_ARGS)

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build site .pytest_cache .mypy_cache .ruff_cache example_project/db.sqlite3
