"""Production settings refuse what would be unsafe and pass Django's deployment checklist
(finding 14.7). Each case starts `manage.py` with its own environment: settings load once per process."""
from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAAS_AND_ENV = ("CONVOS_ENV", "RAILWAY_ENVIRONMENT", "RAILWAY_PROJECT_ID", "DYNO", "K_SERVICE", "KUBERNETES_SERVICE_HOST",
                "FLY_APP_NAME", "RENDER", "TRUST_PROXY_SSL_HEADER", "SECRET_KEY", "POOL_API_KEY", "SERVICES_API_KEY",
                "INSTANCE_SECRET_KEY", "DATABASE_URL", "POOL_DATABASE_URL", "SERVICES_DATABASE_URL", "TEMPLATES_DATABASE_URL")


def _production(tmp_path: Path, **overrides: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in PAAS_AND_ENV}
    return {
        **base, "ENV_FILE": "/dev/null", "VAR_DIR": str(tmp_path / "var"), "CONVOS_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50), "POOL_API_KEY": secrets.token_urlsafe(32),
        "SERVICES_API_KEY": secrets.token_urlsafe(32), "INSTANCE_SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "pool.example.com,testserver", **overrides,
    }


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_it_check_deploy_is_clean_with_production_settings(tmp_path):
    done = _manage(_production(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_it_production_refuses_short_secrets(tmp_path):
    done = _manage(_production(tmp_path, POOL_API_KEY="k"), "check")
    assert done.returncode != 0 and "POOL_API_KEY must be at least 32 characters" in done.stderr
    done = _manage(_production(tmp_path, SECRET_KEY="x" * 40), "check")
    assert done.returncode != 0 and "SECRET_KEY must be at least 50 characters" in done.stderr


def test_it_a_hosting_platform_without_convos_env_is_refused(tmp_path):
    env = {k: v for k, v in _production(tmp_path, RAILWAY_ENVIRONMENT="production").items() if k != "CONVOS_ENV"}
    done = _manage(env, "check")
    assert done.returncode != 0 and "CONVOS_ENV is not set on a hosting platform" in done.stderr
    assert not (tmp_path / "var" / "local-secrets.env").exists()  # no secrets generated for this container


PROBE = """
from django.test import Client
c = Client()
print(c.get('/admin/').status_code, c.get('/healthz').status_code, c.get('/admin/', HTTP_X_FORWARDED_PROTO='https').status_code)
"""


def test_it_plain_http_is_redirected_and_the_proxy_header_trusted_only_when_configured(tmp_path):
    untrusted = _manage(_production(tmp_path), "shell", "-c", PROBE)
    admin, healthz, forwarded = untrusted.stdout.split()[-3:]
    assert admin == "301" and healthz != "301"  # the platform's health check probes over plain HTTP
    assert forwarded == "301"  # anyone can send X-Forwarded-Proto: not trusted by default off a platform
    trusted = _manage(_production(tmp_path, TRUST_PROXY_SSL_HEADER="true"), "shell", "-c", PROBE)
    assert trusted.stdout.split()[-1] != "301", trusted.stdout + trusted.stderr


def test_it_var_dir_and_the_sqlite_files_are_private(tmp_path):
    env = {k: v for k, v in _production(tmp_path).items() if k not in ("CONVOS_ENV",)}
    var = tmp_path / "var"
    done = _manage({**env, "CONVOS_ENV": "development"}, "migrate", "--database", "pool", "--noinput")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    assert stat.S_IMODE((var / "pool.sqlite3").stat().st_mode) == 0o600
    assert stat.S_IMODE((var / "local-secrets.env").stat().st_mode) == 0o600
