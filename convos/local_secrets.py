"""Secrets for a development machine, generated once and kept under `var/`.

With `CONVOS_ENV=development` (the default) a fresh clone runs without any configuration: the
first process to start writes random values to `var/local-secrets.env`, every later process
(web, worker, beat, manage.py) reads the same file. Production (`CONVOS_ENV=production`) never
uses this: missing secrets there are a configuration error.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

GENERATED_NAMES = ("SECRET_KEY", "POOL_API_KEY", "SERVICES_API_KEY", "INSTANCE_SECRET_KEY")


def _parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        values[name.strip()] = value.strip()
    return values


def load_or_create(path: Path) -> dict[str, str]:
    """Return the local secrets, creating the file (mode 0600) if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# Generated on first run for local development. Not used in production."]
        lines += [f"{name}={secrets.token_urlsafe(32)}" for name in GENERATED_NAMES]
        try:
            # O_EXCL: when web, worker and beat start together only one of them writes the file.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(lines) + "\n")
    values = _parse(path.read_text())
    # Another process may be between creating and writing the file; wait for a complete one.
    if not all(name in values for name in GENERATED_NAMES):
        import time

        for _ in range(50):
            time.sleep(0.05)
            values = _parse(path.read_text())
            if all(name in values for name in GENERATED_NAMES):
                break
    return values
