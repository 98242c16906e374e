#!/usr/bin/env bash
# Benchmarks print numbers; they assert nothing (speed is never a test assertion).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m bench.redaction
.venv/bin/python -m bench.startup_and_claims
BENCH_TICK_SIZES=${BENCH_TICK_SIZES_SQLITE:-100,1000} .venv/bin/python -m bench.tick
BENCH_DATABASE=postgres .venv/bin/python -m bench.tick
.venv/bin/python -m bench.railway_budget
.venv/bin/python -m bench.claim_load
.venv/bin/python -m bench.dashboard
