#!/usr/bin/env bash
# Stop the pool started by `make run` (web, worker, beat) and every local agent instance.
# Instances keep their data: the next `make run` starts the same fleet again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
VAR=${VAR_DIR:-var}

if [ -f "$VAR"/run.pid ]; then
  pid=$(cat "$VAR"/run.pid)
  # honcho stops web, worker and beat itself on SIGTERM; give it 15 s before forcing.
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$VAR"/run.pid
  echo "Pool stopped."
else
  echo "The pool was not running (no $VAR/run.pid)."
fi
python manage.py local_fleet stop
python manage.py local_fleet status
