#!/usr/bin/env bash
# Benchmarks print numbers; they assert nothing (speed is never a test assertion).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m bench.redaction
.venv/bin/python -m bench.startup_and_claims
.venv/bin/python -m bench.tick
BENCH_DATABASE=postgres .venv/bin/python -m bench.tick
.venv/bin/python -m bench.dashboard
