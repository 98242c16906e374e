# Two commands set everything up: `make run` (the pool) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed

.PHONY: install run stop test bench soak clean-var

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

## Run the pool: web (gunicorn), worker and beat (celery), with local agent instances.
run: install
	@bash scripts/run.sh

## Stop the pool and every local instance; no runtime process is left behind.
stop: install
	@bash scripts/stop.sh

## Run the whole test suite (PostgreSQL and Redis on this machine; see scripts/test.sh).
test: install
	@bash scripts/test.sh

## Benchmarks: claim latency, tick duration. Prints numbers, asserts nothing.
bench: install
	@bash scripts/bench.sh

## Soak: claims, operator actions and ticks under injected faults for SOAK_MINUTES (default 30) on
## PostgreSQL (databases convos_soak_*); prints the invariants, exits non-zero if one fails.
soak: install
	@bash scripts/ensure_services.sh
	@$(BIN)/python -m bench.soak
