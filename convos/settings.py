"""Settings for the Convos agent pool: everything is read from the environment (django-environ).

Every variable, its default and its meaning is listed in the README's configuration table; keep
the two in step.
"""
from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from convos import local_secrets
from convos.log_redaction import install_record_redaction
from runtime import kinds as runtime_kinds

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))
# It holds the generated secrets, the SQLite databases and the instances' data: this user only.
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
if VAR_DIR.stat().st_uid == os.getuid():
    VAR_DIR.chmod(0o700)
# Prometheus multiprocess mode (convos/metrics.py): every process writes its metric values here and
# a scrape merges them. prometheus_client picks its value store when first imported, so this is set
# before anything can import it; web, worker and beat must name the same directory.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)

env = environ.Env()
# An optional `.env` at the repository root (ENV_FILE names another); real environment variables
# win over it.
_env_file = Path(env.str("ENV_FILE", default=str(BASE_DIR / ".env")))
if _env_file.is_file():
    environ.Env.read_env(_env_file)

CONVOS_ENV = env.str("CONVOS_ENV", default="development")
if CONVOS_ENV not in ("development", "production"):
    raise ImproperlyConfigured("CONVOS_ENV must be 'development' or 'production'")
IS_PRODUCTION = CONVOS_ENV == "production"
# Set by the platforms this may be deployed to. On one of them a forgotten CONVOS_ENV would make
# every container generate secrets of its own (web and worker disagreeing on every key): refuse.
PAAS_MARKERS = ("RAILWAY_ENVIRONMENT", "RAILWAY_PROJECT_ID", "DYNO", "K_SERVICE", "KUBERNETES_SERVICE_HOST", "FLY_APP_NAME", "RENDER")
ON_PAAS = any(os.environ.get(marker) for marker in PAAS_MARKERS)
if ON_PAAS and "CONVOS_ENV" not in os.environ:
    raise ImproperlyConfigured("CONVOS_ENV is not set on a hosting platform: set CONVOS_ENV=production (and the secrets), "
                               "or CONVOS_ENV=development to run with secrets generated per container")

_generated = {} if IS_PRODUCTION else local_secrets.load_or_create(VAR_DIR / "local-secrets.env")
# Production secrets are at least this long (SECRET_KEY: Django's own check wants 50).
MIN_SECRET_LENGTH = 32


def _secret(name: str, *, min_length: int = MIN_SECRET_LENGTH) -> str:
    value = env.str(name, default="") or _generated.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when CONVOS_ENV=production")
    if IS_PRODUCTION and len(value) < min_length:
        raise ImproperlyConfigured(f"{name} must be at least {min_length} characters in production")
    return value


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = _secret("SECRET_KEY", min_length=50)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# X-Forwarded-Proto says whether the client used HTTPS, but anyone can send it: trust it only
# behind a proxy that sets it (the hosting platforms above do; elsewhere say so explicitly).
if env.bool("TRUST_PROXY_SSL_HEADER", default=ON_PAAS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if IS_PRODUCTION:
    # HTTPS only: redirect plain HTTP (except the platform's health check, which probes over
    # HTTP inside its network), tell browsers to never use HTTP again, cookies over HTTPS only.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",  # the OpenAPI schema (/api/schema/, /api/docs/, `manage.py spectacular`)
    "drf_spectacular_sidecar",  # Swagger UI's assets, served as static files: no CDN
    "corsheaders",
    "convos",
    "pool_app",
    "services_app",
    "templates_app",
]

MIDDLEWARE = [
    # First: every log line of the request carries its id (X-Request-ID, or a generated one).
    "convos.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The app serves its own static files (admin CSS and JS) in every mode: gunicorn under
    # `make run`, the Procfile's web, any PaaS. Right after SecurityMiddleware, as its docs say.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # As high as possible and before CommonMiddleware (its docs): a preflight must be answered
    # before anything else can turn it into a redirect or an error without CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "convos.urls"
WSGI_APPLICATION = "convos.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Databases: one alias per bounded context, each from its own URL ---------------------------
DATABASE_ALIASES = {
    "default": "DATABASE_URL",
    "pool": "POOL_DATABASE_URL",
    "services": "SERVICES_DATABASE_URL",
    "templates": "TEMPLATES_DATABASE_URL",
}


def _database(alias: str, variable: str) -> dict:
    config = env.db_url(variable, default=f"sqlite:///{VAR_DIR / f'{alias}.sqlite3'}")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Created by us, readable by this user only (SQLite would create it world-readable).
        database = Path(config["NAME"])
        if database.parent.is_dir() and not database.exists():
            database.touch(mode=0o600)
        # Web, worker and beat share the files: WAL lets readers run beside a writer, IMMEDIATE
        # takes the write lock when a transaction starts (so claims serialise instead of failing
        # with "database is locked" half-way), and the timeout waits for the lock.
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    else:
        config["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
        config["CONN_HEALTH_CHECKS"] = True
        # A database host that drops packets must not hold a request (or /healthz) for the OS's
        # TCP timeout: fail the connect, answer 503 (convos/exceptions.py), reconnect next request.
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT_S", default=5))
        # Test runs that overlap on one server (several developers, parallel sessions) must not
        # share test databases: one run's teardown would drop the other's.
        config["TEST"] = {"NAME": f"test_{config['NAME']}{env.str('TEST_DATABASE_SUFFIX', default='')}"}
    return config


DATABASES = {alias: _database(alias, variable) for alias, variable in DATABASE_ALIASES.items()}
DATABASE_ROUTERS = ["convos.db_router.AppDatabaseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # empty until collectstatic; whitenoise warns about a missing one
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip) made by collectstatic; no manifest, so a page renders even
    # where collectstatic has not run (tests, a first `make run`).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Collected files (release phase, `make run`) are served from STATIC_ROOT; without them the
# apps' own static directories are served directly, so no mode needs a setting to get CSS.
WHITENOISE_USE_FINDERS = True

# Bodies larger than this are refused before they are parsed (413); the claim's own limits are
# much smaller and answered with a 400 naming the field.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["pool_app.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["convos.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "convos.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["pool_app.auth.ClientRateThrottle"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "convos.schema.AutoSchema",
}

# OpenAPI 3, generated from the views by drf-spectacular (convos/schema.py: the error shape, auth).
SPECTACULAR_SETTINGS = {
    "TITLE": "Convos agent pool",
    "DESCRIPTION": ("The pool's REST API. Errors are JSON: `{\"error\": str, \"code\": str, \"fields\"?: {...}}`. "
                    "Authenticate with `Authorization: Bearer <key>` (the operator's POOL_API_KEY or an API client's key); "
                    "/services/* takes SERVICES_API_KEY, /api/proxy/* an instance's own services token."),
    "VERSION": None,  # set below from POOL_VERSION
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The ids of convos/converters.py, so a generated request matches the route.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "resource": {"type": "string", "pattern": "^[^/\\x00-\\x1f]{1,200}$"},
    },
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "convos.schema.add_plain_django_routes"],
}

# --- Pool ---------------------------------------------------------------------------------------
POOL_API_KEY = _secret("POOL_API_KEY")
POOL_MIN_IDLE = env.int("POOL_MIN_IDLE", default=3)
POOL_MAX_TOTAL = env.int("POOL_MAX_TOTAL", default=50)
POOL_STUCK_TIMEOUT_MS = env.int("POOL_STUCK_TIMEOUT_MS", default=900_000)
POOL_CREATE_CONCURRENCY = env.int("POOL_CREATE_CONCURRENCY", default=8)
CLAIM_TIMEOUT_MS = env.int("CLAIM_TIMEOUT_MS", default=180_000)
# Idempotency-Keys (and the claim answers they replay) are kept this long, then pruned by the tick.
CLAIM_REQUEST_TTL_HOURS = env.int("CLAIM_REQUEST_TTL_HOURS", default=24)
# A row whose creation has not been recorded after this long (its worker died, or the provider's
# answer was lost) is reconciled: whatever the provider holds for it is destroyed, the row deleted.
POOL_CREATE_TIMEOUT_MS = env.int("POOL_CREATE_TIMEOUT_MS", default=900_000)
# A `destroying` row older than this lost its destroy (the process died, or services failed): the
# tick destroys it again. Shorter than a destroy takes would start a second one beside the first.
POOL_DESTROY_RETRY_MS = env.int("POOL_DESTROY_RETRY_MS", default=60_000)
# Each tick asks this many idle instances (least recently checked first) whether they are bound
# to a conversation; a bound one is taken out of the pool. 0 turns the audit off.
POOL_IDLE_AUDIT_SAMPLE = env.int("POOL_IDLE_AUDIT_SAMPLE", default=10)
# Resets in a row that leave an instance unclean before it is given up as dead and replaced.
POOL_MAX_RESET_FAILURES = env.int("POOL_MAX_RESET_FAILURES", default=3)
TICK_INTERVAL_MS = env.int("TICK_INTERVAL_MS", default=30_000)
# While the pool is short of idle instances and some are starting, check again this soon instead
# of waiting a whole interval (0 turns it off). Only then: a full pool costs no extra calls.
POOL_STARTING_RECHECK_MS = env.int("POOL_STARTING_RECHECK_MS", default=5_000)
# After a claim that leaves the pool short of POOL_MIN_IDLE, a tick is queued at once (refill in
# seconds, not at the next tick); the single-flight lock keeps it from overlapping another.
POOL_REFILL_AFTER_CLAIM = env.bool("POOL_REFILL_AFTER_CLAIM", default=True)
# ...at most once per this interval per web process: a burst of claims queues a few ticks, not one each.
POOL_REFILL_MIN_INTERVAL_MS = env.int("POOL_REFILL_MIN_INTERVAL_MS", default=2_000)
PROTECTED_INSTANCES = env.list("PROTECTED_INSTANCES", default=[])
# Outage guard: when more than this share of the instances that were healthy turn unreachable in
# one tick (and at least POOL_OUTAGE_MIN_INSTANCES of them), the tick changes and destroys nothing.
POOL_OUTAGE_THRESHOLD = env.float("POOL_OUTAGE_THRESHOLD", default=0.5)
POOL_OUTAGE_MIN_INSTANCES = env.int("POOL_OUTAGE_MIN_INSTANCES", default=3)
# Orphan sweep (pool_app/services/orphan_sweep.py, services_app/services/orphans.py): at most every
# ORPHAN_SWEEP_MS (0 turns it off) the tick lists what the providers hold under the names the pool
# gives and reports what no row records and is older than ORPHAN_GRACE_MS (a creation in flight
# has no row yet). It deletes them only with ORPHAN_SWEEP_DELETE=true, and never while paused.
ORPHAN_SWEEP_MS = env.int("ORPHAN_SWEEP_MS", default=600_000)
ORPHAN_GRACE_MS = env.int("ORPHAN_GRACE_MS", default=900_000)
ORPHAN_SWEEP_DELETE = env.bool("ORPHAN_SWEEP_DELETE", default=False)
XMTP_ENV = env.str("XMTP_ENV", default="dev")
POOL_URL = env.str("POOL_URL", default="")
# What this deployment reports on GET /version and /api/pool/info. The commit is what tells
# deployments apart; Railway injects RAILWAY_GIT_COMMIT_SHA, other platforms can set GIT_SHA.
POOL_VERSION = (env.str("POOL_VERSION", default="") or env.str("RAILWAY_GIT_COMMIT_SHA", default="")
                or env.str("GIT_SHA", default="") or "dev")
SPECTACULAR_SETTINGS["VERSION"] = POOL_VERSION
# This pool's own Railway service and branch (injected by Railway; empty elsewhere). Not the
# instances' Railway settings below.
POOL_GIT_BRANCH = env.str("RAILWAY_GIT_BRANCH", default="")
POOL_RAILWAY_SERVICE_ID = env.str("RAILWAY_SERVICE_ID", default="")
# The runtime kind the pool's instances run (what their /pool/health reports as `runtime`).
POOL_RUNTIME_KIND = env.str("POOL_RUNTIME_KIND", default=runtime_kinds.CONVOS_PYTHON)

# --- CORS (django-cors-headers) -----------------------------------------------------------------
# Browsers on these origins may call the pool API (e.g. a landing page on another domain reading
# /api/pool/counts). Empty: no cross-origin access at all.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
# Only the pool API: admin and the services API (instance tokens, provider keys) are never
# readable cross-origin, whatever the origin list says.
CORS_URLS_REGEX = r"^/api/pool/"
CORS_ALLOW_HEADERS = ["authorization", "content-type", "idempotency-key"]
# Response headers a cross-origin client needs to read: a replayed claim, a throttled request.
CORS_EXPOSE_HEADERS = ["Idempotent-Replayed", "Retry-After"]

# --- Services -----------------------------------------------------------------------------------
SERVICES_API_KEY = _secret("SERVICES_API_KEY")
# Derives each instance's gateway token so that no plaintext token is ever stored (see
# services_app/instance_secrets.py).
INSTANCE_SECRET_KEY = _secret("INSTANCE_SECRET_KEY")
INFRA_PROVIDER = env.str("INFRA_PROVIDER", default="local")
# Health checks run on one asyncio loop (services_app/health_checks.py): a check in flight costs a
# socket, not a thread or a database connection, so this can be high.
HEALTH_CHECK_CONCURRENCY = env.int("HEALTH_CHECK_CONCURRENCY", default=200)
# The tick's per-instance calls that run on threads (auditing idle instances, asking claimed ones
# for their conversation): each thread may hold a database connection per alias, so this stays
# far below PostgreSQL's max_connections.
TICK_CALL_CONCURRENCY = env.int("TICK_CALL_CONCURRENCY", default=16)
HEALTH_CHECK_TIMEOUT_S = env.float("HEALTH_CHECK_TIMEOUT_S", default=5.0)
# The whole batch of health checks in one status call stops waiting after this long.
HEALTH_CHECK_BATCH_DEADLINE_S = env.float("HEALTH_CHECK_BATCH_DEADLINE_S", default=20.0)
PROVISION_TIMEOUT_S = env.float("PROVISION_TIMEOUT_S", default=75.0)
# Self-provisioning (an instance asking for a tool with its own token): tools a claim without a
# template may grant (a template grants its own pool tools), and calls per instance per hour.
SELF_PROVISION_TOOLS = env.list("SELF_PROVISION_TOOLS", default=[])
SELF_PROVISION_MAX_PER_HOUR = env.int("SELF_PROVISION_MAX_PER_HOUR", default=10)
OPENCLAW_PRIMARY_MODEL = env.str("OPENCLAW_PRIMARY_MODEL", default="")
# The production image (POOL_RUNTIME_KIND openclaw or hermes, see services_app/runtime_kinds.py)
# does not boot without an OpenRouter key: each instance gets its own from the openrouter tool when
# that is enabled, else this pool-wide one. The others are optional keys it is given when set.
RUNTIME_OPENROUTER_API_KEY = env.str("RUNTIME_OPENROUTER_API_KEY", default="")
RUNTIME_EXA_API_KEY = env.str("RUNTIME_EXA_API_KEY", default="")
RUNTIME_CONVOS_API_KEY = env.str("RUNTIME_CONVOS_API_KEY", default="")
RUNTIME_POSTHOG_API_KEY = env.str("RUNTIME_POSTHOG_API_KEY", default="")
RUNTIME_POSTHOG_HOST = env.str("RUNTIME_POSTHOG_HOST", default="")
# Local infra provider: one `python -m runtime` process per instance on this machine.
LOCAL_INSTANCES_DIR = Path(env.str("LOCAL_INSTANCES_DIR", default=str(VAR_DIR / "instances")))
LOCAL_INSTANCE_HOST = env.str("LOCAL_INSTANCE_HOST", default="127.0.0.1")
LOCAL_RUNTIME_BOOT_SECONDS = env.float("LOCAL_RUNTIME_BOOT_SECONDS", default=2.0)
LOCAL_RUNTIME_PYTHON = env.str("LOCAL_RUNTIME_PYTHON", default="")
# Extra variables for every local runtime, e.g. "RUNTIME_JOIN_PENDING_SECONDS=30" (comma-separated).
LOCAL_RUNTIME_ENV = env.dict("LOCAL_RUNTIME_ENV", default={})
# Fake infra provider (INFRA_PROVIDER=fake, benchmarks and tests only): simulated health-check latency.
FAKE_HEALTH_LATENCY_MS = env.float("FAKE_HEALTH_LATENCY_MS", default=0.0)
# Fault knobs of the fake provider (tests that SIGKILL a process mid-call; a fleet process reads
# its own): a create that has made the instance holds its answer this long, a destroy that has
# removed it the same, and every provision sleeps this long before the instance acts on it.
FAKE_CREATE_DELAY_MS = env.float("FAKE_CREATE_DELAY_MS", default=0.0)
FAKE_DESTROY_DELAY_MS = env.float("FAKE_DESTROY_DELAY_MS", default=0.0)
FAKE_PROVISION_DELAY_MS = env.float("FAKE_PROVISION_DELAY_MS", default=0.0)
# A fake fleet process shared by every process (`manage.py fake_fleet`), e.g. http://127.0.0.1:8765;
# empty: each process serves its own fake instances in-process.
FAKE_FLEET_URL = env.str("FAKE_FLEET_URL", default="")

# Railway infra provider (INFRA_PROVIDER=railway): one project per instance.
RAILWAY_API_URL = env.str("RAILWAY_API_URL", default="https://backboard.railway.com/graphql/v2")
# Several comma-separated tokens are rotated (each may create one project per 30 s).
RAILWAY_API_TOKENS = env.list("RAILWAY_API_TOKENS", default=[]) or [t for t in [env.str("RAILWAY_API_TOKEN", default="")] if t]
RAILWAY_API_TOKEN = RAILWAY_API_TOKENS[0] if RAILWAY_API_TOKENS else ""
RAILWAY_WORKSPACE_ID = env.str("RAILWAY_WORKSPACE_ID", default="")
RAILWAY_ENVIRONMENT_NAME = env.str("RAILWAY_ENVIRONMENT_NAME", default="production")
RAILWAY_RUNTIME_IMAGE = env.str("RAILWAY_RUNTIME_IMAGE", default="ghcr.io/xmtplabs/convos-runtime:production")
# Empty: the image's own CMD; set it only for an image that needs another start command.
RAILWAY_START_COMMAND = env.str("RAILWAY_START_COMMAND", default="")
RAILWAY_INSTANCE_URL_TEMPLATE = env.str("RAILWAY_INSTANCE_URL_TEMPLATE", default="https://{domain}")
RAILWAY_PROJECTS_PAGE_SIZE = env.int("RAILWAY_PROJECTS_PAGE_SIZE", default=50)
RAILWAY_RATE_LIMIT_RPS = env.float("RAILWAY_RATE_LIMIT_RPS", default=40.0)
RAILWAY_PROJECT_CREATE_INTERVAL_S = env.float("RAILWAY_PROJECT_CREATE_INTERVAL_S", default=30.0)
RAILWAY_TIMEOUT_S = env.float("RAILWAY_TIMEOUT_S", default=30.0)
RAILWAY_MAX_RETRIES = env.int("RAILWAY_MAX_RETRIES", default=4)
RAILWAY_INSTANCE_VCPUS = env.float("RAILWAY_INSTANCE_VCPUS", default=2.0)
RAILWAY_INSTANCE_MEMORY_GB = env.float("RAILWAY_INSTANCE_MEMORY_GB", default=2.0)
# Deploy status on demand (services_app/services/infra.py status_batch): instances that answer their
# health check keep their last known deploy status; the provider is asked only about the others,
# those whose infra changed in the last RAILWAY_RECENT_CHANGE_MS, and every instance at a full
# sweep every RAILWAY_FULL_SYNC_MS (or after a failed batch). RAILWAY_STATUS_ALIASES_PER_CALL
# projects are asked per GraphQL call (aliased `project(id:)` lookups).
RAILWAY_FULL_SYNC_MS = env.int("RAILWAY_FULL_SYNC_MS", default=300_000)
RAILWAY_RECENT_CHANGE_MS = env.int("RAILWAY_RECENT_CHANGE_MS", default=300_000)
RAILWAY_STATUS_ALIASES_PER_CALL = env.int("RAILWAY_STATUS_ALIASES_PER_CALL", default=50)
GHCR_USERNAME = env.str("GHCR_USERNAME", default="")
GHCR_TOKEN = env.str("GHCR_TOKEN", default="")

# Tool plugins: each is enabled only when its key is set.
OPENROUTER_API_URL = env.str("OPENROUTER_API_URL", default="https://openrouter.ai/api/v1")
OPENROUTER_MANAGEMENT_KEY = env.str("OPENROUTER_MANAGEMENT_KEY", default="")
OPENROUTER_KEY_LIMIT = env.float("OPENROUTER_KEY_LIMIT", default=20.0)
OPENROUTER_KEY_LIMIT_RESET = env.str("OPENROUTER_KEY_LIMIT_RESET", default="monthly")
AGENTMAIL_API_URL = env.str("AGENTMAIL_API_URL", default="https://api.agentmail.to/v0")
AGENTMAIL_API_KEY = env.str("AGENTMAIL_API_KEY", default="")
AGENTMAIL_DOMAIN = env.str("AGENTMAIL_DOMAIN", default="")
TELNYX_API_URL = env.str("TELNYX_API_URL", default="https://api.telnyx.com/v2")
TELNYX_API_KEY = env.str("TELNYX_API_KEY", default="")
TELNYX_MESSAGING_PROFILE_ID = env.str("TELNYX_MESSAGING_PROFILE_ID", default="")
BANKR_API_URL = env.str("BANKR_API_URL", default="https://api.bankr.bot")
BANKR_API_KEY = env.str("BANKR_API_KEY", default="")
PROVIDER_TIMEOUT_S = env.float("PROVIDER_TIMEOUT_S", default=20.0)

# Services over HTTP: with SERVICES_URL set the pool calls services at that URL, otherwise in process.
SERVICES_URL = env.str("SERVICES_URL", default="")
# What instances call for self-provisioning (the services API as they reach it).
SERVICES_PUBLIC_URL = env.str("SERVICES_PUBLIC_URL", default="")

# Cache: API clients' rate limits. Redis when configured (shared by every web process), else memory.
# Redis being down never fails a request: convos/cache.py turns failed reads into misses and drops
# failed writes; these socket timeouts bound a call to a Redis that accepts but does not answer.
REDIS_TIMEOUT_S = env.float("REDIS_TIMEOUT_S", default=2.0)
CACHES = {
    "default": (
        {"BACKEND": "convos.cache.FailSoftRedisCache", "LOCATION": env.str("REDIS_URL"),
         "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT_S, "socket_timeout": REDIS_TIMEOUT_S}}
        if env.str("REDIS_URL", default="")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Celery -------------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
CELERY_BROKER_DIR = VAR_DIR / "celery-broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: a queue in a folder, so beat and worker run as in production
    # without a broker server. Both sides must name the same folder for in and out.
    for sub in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),  # else kombu writes ./control
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Broker outages (Redis restarted or unreachable): worker and beat reconnect by themselves.
# RETRY_ON_STARTUP keeps a worker started while the broker is down retrying instead of exiting;
# RETRY + MAX_RETRIES=None keep a running worker retrying for ever after a lost connection (the
# default gives up after 100 attempts). Beat logs each failed send and sends the next schedule
# entry once the broker is back (tests/convos/test_broker_reconnect.py).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# One connection attempt's timeout. The claim's refill enqueue uses a connection of its own with
# REDIS_TIMEOUT_S and no retries (pool_app/services/claim.py: a claim never waits on the broker).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=4.0)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Without a connect timeout a broker host that drops packets hangs a publish (beat's sends) for
    # minutes. No socket_timeout here: the worker's blocking reads must be free to wait.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": REDIS_TIMEOUT_S}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "pool-tick": {
        "task": "pool_app.tasks.pool_tick_task",
        "schedule": TICK_INTERVAL_MS / 1000.0,
        # A tick queued while no worker ran is stale by the next one: drop it instead of
        # running a burst of old ticks when the worker comes back.
        "options": {"expires": TICK_INTERVAL_MS / 1000.0},
    },
}

# --- Logging ------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `text` (default): one readable line per record. `json`: one JSON object per line (time, level,
# logger, message, request_id and instance_id when known; convos/log_format.py), for log search.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'text' or 'json'")
# Celery's worker and beat replace the root logger's handlers with their own text format; with
# json they keep the handler configured below, so every process prints the same lines.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"
# Bearer token that GET /metrics (Prometheus) requires; empty: the endpoint is open.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Every record of every process is redacted as it is created (see convos/log_redaction.py).
install_record_redaction()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "convos.log_redaction.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "convos.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain",
                    "filters": ["redact_secrets"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
