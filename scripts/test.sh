#!/usr/bin/env bash
# The whole test suite. Locking and queue behaviour is only proven on the real servers, so the
# suite runs on PostgreSQL (four distinct databases, one per alias) and Redis unless the
# environment already names others. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PG=${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
export DATABASE_URL=${DATABASE_URL:-$PG/convos_default}
export POOL_DATABASE_URL=${POOL_DATABASE_URL:-$PG/convos_pool}
export SERVICES_DATABASE_URL=${SERVICES_DATABASE_URL:-$PG/convos_services}
export TEMPLATES_DATABASE_URL=${TEMPLATES_DATABASE_URL:-$PG/convos_templates}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}
# Tests never read a developer's .env or var/: they get a scratch VAR_DIR of their own.
export VAR_DIR=${VAR_DIR:-$(mktemp -d /tmp/convos-test-var.XXXXXX)}
export ENV_FILE=/dev/null
# The tests configure development mode themselves, wherever they run (a CI pod looks like a platform).
export CONVOS_ENV=${CONVOS_ENV:-development}
# Test threads (live server, health checks) must not keep connections that block dropping the test databases.
export DB_CONN_MAX_AGE=0
# Concurrent runs on one machine each get their own test databases.
export TEST_DATABASE_SUFFIX=${TEST_DATABASE_SUFFIX:-_$$}

if [[ "$DATABASE_URL" == postgres* ]]; then
  bash scripts/ensure_services.sh
fi
exec .venv/bin/python -m pytest "$@"
