#!/usr/bin/env bash
# Start the pool in the foreground: migrate every database, create the operator login on first
# run, resume local instances stopped by `make stop`, then run web, worker and beat (Procfile).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
VAR=${VAR_DIR:-var}
# `make run` is a developer's machine: generated secrets, SQLite, local instances.
export CONVOS_ENV=${CONVOS_ENV:-development}
mkdir -p "$VAR"

if [ -f "$VAR"/run.pid ] && kill -0 "$(cat "$VAR"/run.pid)" 2>/dev/null; then
  echo "The pool is already running (pid $(cat "$VAR"/run.pid)); 'make stop' stops it." >&2
  exit 1
fi

python manage.py migrate_all
python manage.py collectstatic --noinput --verbosity 0
python manage.py ensure_operator
python manage.py local_fleet start
echo "API key: POOL_API_KEY in $VAR/local-secrets.env (or your environment); admin at http://127.0.0.1:${PORT:-8000}/admin/"

# honcho gives each process its own PORT from -p upwards; web is started first, so it gets $PORT.
honcho start -f Procfile -p "${PORT:-8000}" web worker beat &
honcho_pid=$!
echo "$honcho_pid" > "$VAR"/run.pid
trap 'kill -TERM "$honcho_pid" 2>/dev/null || true' INT TERM
trap 'rm -f "$VAR"/run.pid' EXIT
# `wait` returns early when a trapped signal arrives; wait again for honcho to finish stopping.
wait "$honcho_pid" || true
wait "$honcho_pid" 2>/dev/null || true
