# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv on first use and install what they need from PyPI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean postgres

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# An editable install writes no bytecode, and PYTHONDONTWRITEBYTECODE may forbid
	# writing it at import: the CLI would compile its modules at every call (≈ 4 ms).
	$(BIN)/python -m compileall -q src/detente >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/detente plan -f examples/cluster.yaml -f examples/queues.yaml -f examples/jobs.yaml
	$(BIN)/detente simulate
	DETENTE=$(CURDIR)/$(BIN)/detente examples/live-demo.sh
	DETENTE=$(CURDIR)/$(BIN)/detente examples/serve-demo.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src/detente/core

# The store tests run on a real PostgreSQL server that the tests start themselves
# (initdb in a temporary folder); this installs Debian's package when it is missing.
postgres:
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null \
	  || echo "PostgreSQL could not be installed: the PostgreSQL store tests will be skipped"; \
	else echo "no apt-get: the PostgreSQL store tests will be skipped"; fi

test: lint typecheck postgres
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/cycle_bench.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
