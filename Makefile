# player-session-service: `make run` starts a local Cassandra node, applies the schema and serves;
# `make test` runs the test suite against that node. Everything lives in .venv and .cassandra/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: the venv is rebuilt only when pyproject.toml changes.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv lint node schema run run-cluster test stop stop-cluster clean

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

# Three Cassandra nodes (127.0.0.1-3, RF 3), Redis and two stateless replicas on :8081 and :8082
# sharing one live feed; Ctrl-C stops the replicas, `make stop-cluster` the nodes and Redis.
CLUSTER_ENV := PSS_CASSANDRA_CONTACT_POINTS=127.0.0.1,127.0.0.2,127.0.0.3 PSS_CASSANDRA_PORT=9043 \
	PSS_CASSANDRA_REPLICATION_FACTOR=3 PSS_LIVE_BUS=redis://127.0.0.1:6390/0

run-cluster: venv
	$(PY) -m daemon cluster start
	$(PY) -m daemon bus start
	$(CLUSTER_ENV) $(PY) -m daemon schema apply
	trap 'kill $$second 2>/dev/null' EXIT INT TERM; \
	$(CLUSTER_ENV) PSS_SERVER_PORT=8082 $(PY) -m daemon serve & second=$$!; \
	$(CLUSTER_ENV) PSS_SERVER_PORT=8081 $(PY) -m daemon serve

stop-cluster:
	@if [ -x $(PY) ]; then $(PY) -m daemon bus stop; $(PY) -m daemon cluster stop; fi

stop:
	@if [ -x $(PY) ]; then $(PY) -m daemon node stop; else echo "no $(VENV): nothing started"; fi

# Stops the node first: deleting the data of a running node would crash it.
clean: stop stop-cluster
	rm -rf $(VENV) .cassandra .cassandra-cluster .redis build *.egg-info .pytest_cache test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
