# Developer and CI entry points. Needs python3 (3.11+) and make to run the server; the
# tests also need go (FerretDB stands in for MongoDB), Debian's chromium (the CORS
# test's browser) and Debian's rabbitmq-server (the broker bridge's tests), both installed
# with apt-get when missing. The rest comes from PyPI and the
# Go module proxy.

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Two stamps: `make run` installs the runtime dependencies only; `make test`, `make lint`
# and `make bench` add the `test` extra (pytest, playwright, ruff, mypy...) on top.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
FERRETDB_DIR := tools/ferretdb
FERRETDB_BIN := $(FERRETDB_DIR)/ferretdb-embedded
FERRETDB_SRC := $(FERRETDB_DIR)/main.go $(FERRETDB_DIR)/go.mod $(FERRETDB_DIR)/go.sum
PYTEST_ARGS ?=
# Headless browser for tests/auth/test_cors_browser.py (driven by Playwright, which never
# downloads a browser of its own here).
CHROMIUM := /usr/bin/chromium
# RabbitMQ for tests/adapters/test_amqp_*.py: tests/support/rabbitmq.py runs a node of its
# own on private ports (the package's system service is never used).
RABBITMQ := /usr/lib/rabbitmq/bin/rabbitmq-server

.PHONY: venv dev-venv ferretdb chromium rabbitmq run test bench clean lint

venv: $(RUN_STAMP)

dev-venv: $(DEV_STAMP)

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

# Reinstalled whenever pyproject.toml changes; each stamp records its last install. The
# dev install includes the runtime one, so it marks both as done.
$(RUN_STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install -e '.[test]'
	touch $(RUN_STAMP) $@

ferretdb: $(FERRETDB_BIN)

$(FERRETDB_BIN): $(FERRETDB_SRC)
	cd $(FERRETDB_DIR) && go build -o ferretdb-embedded .

chromium: $(CHROMIUM)

# A file target: nothing to do once /usr/bin/chromium exists. Needs root (CI runs as root).
$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

rabbitmq: $(RABBITMQ)

# As chromium's. The package starts the system broker where it can (not in a container
# without init); the tests never use it.
$(RABBITMQ):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server

# Foreground; exec so that SIGTERM/SIGINT reach the server itself. The embedded SQLite
# database needs nothing else.
run: venv
	exec $(VENV_PY) -m fhir_server serve

# The whole suite on each storage engine: the embedded SQLite, then MongoDB (MONGODB_URI
# when set, else an embedded FerretDB standing in for it).
test: dev-venv ferretdb $(CHROMIUM) $(RABBITMQ)
	FHIR_TEST_ENGINE=sqlite $(VENV_PY) -m pytest -q $(PYTEST_ARGS)
	FHIR_TEST_ENGINE=mongo $(VENV_PY) -m pytest -q $(PYTEST_ARGS)

bench: dev-venv ferretdb
	@test -f bench/run.py || { echo "bench/run.py does not exist yet" >&2; exit 1; }
	$(VENV_PY) bench/run.py

clean:
	rm -rf var/ build/ dist/ *.egg-info $(FERRETDB_BIN) .pytest_cache .import_linter_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# ruff, mypy, the generated configuration reference, and the import contracts
# (pyproject.toml's [tool.importlinter]): which room may import which.
lint: dev-venv
	$(VENV_PY) -m ruff check fhir_server tests tools bench examples
	$(VENV_PY) -m mypy
	$(VENV_PY) tools/gen_config_docs.py --check
	$(VENV)/bin/lint-imports
