# routerd — every target bootstraps .venv on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/routerd.yaml
# the tests that start routerd's server: run a second time on the other engine (server: aiohttp)
SERVER_TESTS := tests/test_server_*.py tests/test_admin_*.py tests/test_agent_clients.py \
	tests/test_any_to_any*.py tests/test_matrix*.py tests/test_routing_faults.py \
	tests/test_routing_server.py tests/test_routing_sse.py

.PHONY: run test lint typecheck check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/routerd -c $(CONFIG)

check: $(STAMP)
	$(BIN)/routerd check -c $(CONFIG)

test: $(STAMP)
	$(BIN)/ruff check routerd tests
	$(BIN)/mypy
	$(BIN)/pytest
	ROUTERD_TEST_SERVER=aiohttp $(BIN)/pytest $(SERVER_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check routerd tests
	$(BIN)/ruff format --check routerd tests

typecheck: $(STAMP)
	$(BIN)/mypy

# make bench [BENCH_ARGS="--quick | --long | --json FILE | --profile FILE"]; see tests/bench/run.py
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || apt-get install -y wrk >/dev/null 2>&1 \
		|| echo "wrk not installed: using the in-tree load generator"
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
