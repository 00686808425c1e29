# django-durable: `make demo` and `make test` work on a fresh machine (they set up .venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv demo test lint typecheck checks test-sqlite test-postgres test-pg-restart docs chaos bench bench-smoke clean

help:
	@echo "make demo   - set up .venv, migrate the SQLite example, run a workflow through a worker crash"
	@echo "make test   - set up .venv, lint, type-check, Django checks, tests on SQLite and PostgreSQL, docs"
	@echo "make chaos  - the long reliability tier on PostgreSQL (kill -9 chaos at scale, soak)"
	@echo "make bench  - django-durable and its peers side by side on PostgreSQL (bench/results/)"
	@echo "make bench-smoke - the benchmark harness once, tiny sizes (its figures mean nothing)"

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

# PostgreSQL restarted under load, on a throwaway cluster of its own (never the shared server).
test-pg-restart: venv
	@tests/reliability/throwaway_postgres.sh env DURABLE_TEST_DB=postgres \
		$(BIN)/pytest -p no:cacheprovider tests/reliability/test_database_restart.py $(PYTEST_ARGS); \
	rc=$$?; \
	if [ $$rc = 77 ] && [ "$$DURABLE_REQUIRE_POSTGRES" != "1" ]; then \
		echo ""; \
		echo "################################################################"; \
		echo "###  SKIPPED: the database-restart test needs a throwaway     ###"; \
		echo "###  PostgreSQL cluster (root and pg_createcluster).         ###"; \
		echo "################################################################"; \
		echo ""; \
	else exit $$rc; fi

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: lint typecheck checks test-sqlite test-postgres test-pg-restart docs

# The long reliability tier (minutes): kill -9 chaos at scale, soak. PostgreSQL only.
# On a throwaway cluster when the machine can make one (the restart tests need it).
chaos: venv
	@tests/reliability/throwaway_postgres.sh env DURABLE_TEST_DB=postgres \
		$(BIN)/pytest -p no:cacheprovider -m chaos -s tests/reliability $(PYTEST_ARGS); \
	rc=$$?; \
	if [ $$rc = 77 ]; then \
		echo "No throwaway cluster: the chaos tier runs on the shared server, without restarts."; \
		DURABLE_TEST_DB=postgres $(BIN)/pytest -m chaos -s tests/reliability $(PYTEST_ARGS); \
	else exit $$rc; fi

# The peers (dbos, procrastinate, django-tasks-db) and matplotlib, into the same venv.
$(BENCH_STAMP): bench/requirements.txt $(STAMP)
	$(BIN)/pip install --quiet -r bench/requirements.txt
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

bench-smoke: $(BENCH_STAMP)
	$(PY) bench/run.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build site .pytest_cache .mypy_cache .ruff_cache example_project/db.sqlite3
