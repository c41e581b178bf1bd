# player-session-service: `make run` starts a local Cassandra node, applies the schema and serves;
# `make test` runs the test suite against that node. Everything lives in .venv and .cassandra/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: the venv is rebuilt only when pyproject.toml changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv lint node schema run test stop clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

node: venv
	$(PY) -m daemon node start

schema: node
	$(PY) -m daemon schema apply

run: schema
	$(PY) -m daemon serve

# The layers in pyproject.toml ([tool.importlinter]) are checked first: a wrong import fails the build.
lint: venv
	$(VENV)/bin/lint-imports --no-cache

# Tests create and drop their own keyspaces, so they need the node but not `schema`.
test: lint node
	$(PY) -m pytest $(PYTEST_ARGS)

stop:
	@if [ -x $(PY) ]; then $(PY) -m daemon node stop; else echo "no $(VENV): nothing started"; fi

# Stops the node first: deleting the data of a running node would crash it.
clean: stop
	rm -rf $(VENV) .cassandra build *.egg-info .pytest_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
