"""Settings shared by every environment. Values come from the environment through config.env."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

from celery.schedules import crontab
from csp.constants import NONCE, NONE, SELF

from config.env import env
from config.settings.siem import *  # noqa: F403 - audit streaming to SIEMs, with its beat entry

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[".localhost", "localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- Tenancy -----------------------------------------------------------------------------------
SHARED_APPS = [
    "tenants",  # before django_tenants so our create_tenant command wins
    "django_tenants",
    "inference.catalog",
    "audit.platform",  # the platform audit trail and chain checkpoints: public schema only
    "django_celery_beat",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, not a CDN (self-hosted, offline)
    "axes",  # sign-in lockout for the platform host's admin (public schema)
    "django_otp",  # second factor of platform staff (public schema)
    "django_otp.plugins.otp_totp",
    "django_otp_webauthn",  # passkeys of platform staff (access/passkeys.py)
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "axes",  # sign-in lockout: attempts per tenant schema (access/lockout.py)
    "django_otp",  # TOTP second factor for admin and compliance roles (access/mfa.py)
    "django_otp.plugins.otp_totp",
    "django_otp_webauthn",  # WebAuthn passkeys beside TOTP; the RP ID is the tenant host (access/passkeys.py)
    "access",
    "audit",
    "inference",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False
# New tenants are cloned from a migrated template schema instead of running every migration
# (see docs/decisions.md); the template is kept current by tenants.services.tenant_template_sync.
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
# Set the search path once per request (and after set_tenant / rollback), not before every query: halves the
# database round trips of an API call (bench/overhead.py).
TENANT_LIMIT_SET_CALLS = True
# Per-process caches that PostgreSQL empties (LISTEN/NOTIFY) when their rows change (config/tenant_cache.py):
# host -> tenant lookups, and API keys with their users, permissions and consent. Each value is the most an
# entry lives should a notification be missed; 0 turns that cache off. The listener needs a session-mode
# connection: behind PgBouncer in transaction mode, set ATRIUM_CACHE_LISTEN_URL to the database itself.
ATRIUM_TENANT_CACHE_S = env.float("ATRIUM_TENANT_CACHE_S", default=30.0)
ATRIUM_AUTH_CACHE_S = env.float("ATRIUM_AUTH_CACHE_S", default=30.0)
ATRIUM_CACHE_LISTEN_URL = env.str("ATRIUM_CACHE_LISTEN_URL", default="")
# Whole-domain names for the public site; tenants live on "<slug>.<ATRIUM_BASE_DOMAIN>".
ATRIUM_BASE_DOMAIN = env.str("ATRIUM_BASE_DOMAIN", default="localhost")

DATABASES = {"default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/atrium")}
DATABASES["default"]["ENGINE"] = "config.db"  # django-tenants' backend, safe behind PgBouncer (config/db/base.py)
# "transaction" when DATABASE_URL goes through PgBouncer (or another pooler) in transaction pooling mode.
DATABASE_POOL_MODE = env.str("DATABASE_POOL_MODE", default="session")
if DATABASE_POOL_MODE == "transaction":
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True  # a named cursor outlives a pooled transaction
# A Unix-socket host arrives percent-encoded in the URL (postgres://user@%2Fpath%2Fto%2Fdir/db).
DATABASES["default"]["HOST"] = unquote(str(DATABASES["default"].get("HOST", "")))
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MIDDLEWARE = [
    "config.middleware.TenantMiddleware",  # django-tenants' TenantMainMiddleware with a lookup cache
    "config.middleware.RequestIdMiddleware",
    "config.request_limits.BodyLimitMiddleware",  # refuses oversized bodies before anything parses them
    "django.middleware.security.SecurityMiddleware",
    "config.security_headers.PermissionsPolicyMiddleware",
    "config.middleware.ApiFastPathMiddleware",  # /v1/ is served here, past the browser middleware below
    "csp.middleware.CSPMiddleware",  # Content-Security-Policy with a per-request nonce (pages, not /v1 JSON)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "access.session_policy.SessionPolicyMiddleware",  # the tenant's idle timeout and absolute session lifetime
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified()
    "access.mfa.MfaRequiredMiddleware",  # admin site and compliance console: second factor first (tenant policy)
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as axes requires: turns a lockout into access.lockout's page
]

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
                "csp.context_processors.nonce",  # {{ CSP_NONCE }} for the rare inline <script nonce=...>
            ],
        },
    }
]

WSGI_APPLICATION = "config.wsgi.application"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": env.int("ATRIUM_PASSWORD_MIN_LENGTH", default=12)}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Sign-in lockout (django-axes; access/lockout.py) --------------------------------------------------
# After ATRIUM_LOGIN_FAILURE_LIMIT wrong passwords for one account, or from one client address, sign-in is refused for
# ATRIUM_LOGIN_COOLOFF_MINUTES (per tenant); an administrator can unlock sooner (Admin -> Sign-in lockouts).
ATRIUM_LOGIN_FAILURE_LIMIT = env.int("ATRIUM_LOGIN_FAILURE_LIMIT", default=5)
ATRIUM_LOGIN_COOLOFF_MINUTES = env.int("ATRIUM_LOGIN_COOLOFF_MINUTES", default=15)
AXES_FAILURE_LIMIT = ATRIUM_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=ATRIUM_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one reaching the limit locks
AXES_RESET_ON_SUCCESS = True  # a right password clears that account's earlier failures
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"  # X-Forwarded-For only from ATRIUM_TRUSTED_PROXIES
AXES_LOCKOUT_CALLABLE = "access.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_ENABLE_ADMIN = False  # Atrium registers the attempts on its own admin sites, with an audited unlock
AXES_SENSITIVE_PARAMETERS = ["password"]

# --- Second factor (access/mfa.py) -------------------------------------------------------------------
# Off switch for the whole platform (each tenant has its own policy, on by default): only for test suites and
# emergencies; production keeps it on.
ATRIUM_MFA_ENFORCED = env.bool("ATRIUM_MFA_ENFORCED", default=True)
ATRIUM_PLATFORM_MFA_REQUIRED = env.bool("ATRIUM_PLATFORM_MFA_REQUIRED", default=True)  # platform host staff
# SSO sign-ins count as two-factor when the ID token's amr names a second factor, or its acr is one of these.
ATRIUM_SSO_MFA_ACR_VALUES = env.list("ATRIUM_SSO_MFA_ACR_VALUES", default=[])
OTP_TOTP_ISSUER = env.str("ATRIUM_TOTP_ISSUER", default="Atrium")
# Passkeys (django-otp-webauthn): a second factor only, never a password replacement; the relying party ID, its name
# and the one accepted origin are those of the host the request came to (each tenant's own), not a fixed setting.
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_HELPER_CLASS = "access.passkeys.TenantWebAuthnHelper"
OTP_WEBAUTHN_RP_ID_CALLABLE = "access.passkeys.rp_id"
OTP_WEBAUTHN_RP_NAME_CALLABLE = "access.passkeys.rp_name"
OTP_WEBAUTHN_EXCEPTION_LOGGER_NAME = "atrium.passkeys"
# otp_webauthn.E030 wants a fixed list of origins; ours is computed per request (access.passkeys.origin).
SILENCED_SYSTEM_CHECKS = ["otp_webauthn.E030"]
AUTHENTICATION_BACKENDS = [
    "access.lockout.LockoutBackend",  # django-axes: refuses a locked-out account or address before the others
    "django.contrib.auth.backends.ModelBackend",
    "access.sso.TenantOIDCBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/chat/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env.path("ATRIUM_STATIC_ROOT", default=str(BASE_DIR / "var" / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve app and project static files without a collectstatic step in development and tests.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = env.path("ATRIUM_MEDIA_ROOT", default=str(BASE_DIR / "var" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
# --- Security headers (docs/security.md) -----------------------------------------------------------
# No 'unsafe-inline': scripts and styles are static files; an inline <script> or <style> needs nonce="{{ CSP_NONCE }}"
# (or request.csp_nonce in Python). Style attributes in markup are refused; set styles from JavaScript (CSSOM) instead.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    },
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
ATRIUM_PERMISSIONS_POLICY_DENY = env.list("ATRIUM_PERMISSIONS_POLICY_DENY", default=[
    "camera", "microphone", "geolocation", "payment", "usb", "serial", "bluetooth", "hid", "midi",
    "accelerometer", "gyroscope", "magnetometer", "display-capture", "interest-cohort"])
SESSION_COOKIE_SAMESITE = "Lax"
# Platform defaults of the session policy; each tenant sets its own (Tenant.session_idle_minutes/_max_hours).
ATRIUM_SESSION_IDLE_MINUTES = env.int("ATRIUM_SESSION_IDLE_MINUTES", default=30)
ATRIUM_SESSION_MAX_HOURS = env.int("ATRIUM_SESSION_MAX_HOURS", default=12)
SESSION_COOKIE_AGE = ATRIUM_SESSION_MAX_HOURS * 3600  # the cookie never outlives the longest session (was 14 days)
CSRF_COOKIE_HTTPONLY = False  # the chat's JavaScript reads it to send X-CSRFToken
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Secrets at rest ---------------------------------------------------------------------------
# Comma-separated Fernet keys; the first encrypts, all decrypt (MultiFernet), so keys rotate.
ATRIUM_ENCRYPTION_KEYS = env.list("ATRIUM_ENCRYPTION_KEYS", default=[])

# Client IP: X-Forwarded-For is believed only when the direct peer is in one of these networks (comma-separated
# CIDRs or addresses: your load balancers / reverse proxies). Empty: never; the peer's address is the client's.
ATRIUM_TRUSTED_PROXIES = env.list("ATRIUM_TRUSTED_PROXIES", default=[])

# --- Audit keys (never stored in the database, so database access alone cannot forge entries or checkpoints) ----
# HMAC key of the platform audit trail (audit.platform); production refuses to start without it.
ATRIUM_PLATFORM_AUDIT_KEY = env.str("ATRIUM_PLATFORM_AUDIT_KEY", default="")
# HMAC key that signs the checkpoints of every chain's head (audit.platform.checkpoints); separate from the chain
# keys. Production refuses to start without it.
ATRIUM_AUDIT_CHECKPOINT_KEY = env.str("ATRIUM_AUDIT_CHECKPOINT_KEY", default="")
# Where checkpoints are also appended, one JSON line each, one file per chain: put it on storage the database's
# administrators cannot rewrite (another host's mount, an append-only or WORM volume, a synced object store).
ATRIUM_AUDIT_CHECKPOINT_DIR = env.str("ATRIUM_AUDIT_CHECKPOINT_DIR",
                                      default=str(BASE_DIR / "var" / "audit-checkpoints"))
ATRIUM_AUDIT_CHECKPOINT_INTERVAL_S = env.float("ATRIUM_AUDIT_CHECKPOINT_INTERVAL_S", default=60.0)

# --- Redis, Celery -----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task leaves the job to be redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
# Schedule kept in the public schema; an entry without "tenant_schemas" runs once per tenant.
CELERY_BEAT_SCHEDULER = "config.beat:PlatformBeatScheduler"
CELERY_TIMEZONE = "UTC"
# A task for a suspended tenant is retried this often until the tenant is active again (config/tasks_base.py).
ATRIUM_SUSPENDED_TASK_RETRY_S = env.int("ATRIUM_SUSPENDED_TASK_RETRY_S", default=300)
ATRIUM_HEALTH_CHECK_INTERVAL_S = env.int("ATRIUM_HEALTH_CHECK_INTERVAL_S", default=60)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "provider-health": {
        "task": "inference.tasks.provider_health_check_all",
        "schedule": float(ATRIUM_HEALTH_CHECK_INTERVAL_S),
        "options": {"expires": float(ATRIUM_HEALTH_CHECK_INTERVAL_S)},
        "tenant_schemas": ["public"],
    },
    "retention": {
        "task": "audit.tasks.retention_run",
        "schedule": crontab(minute=17, hour=3),
    },
    "export-expiry": {
        "task": "audit.tasks.export_expire",
        "schedule": crontab(minute=23),
    },
    "audit-checkpoint": {  # every tenant's chain and the platform's: walked from the public schema
        "task": "audit.platform.tasks.checkpoint_all",
        "schedule": ATRIUM_AUDIT_CHECKPOINT_INTERVAL_S,
        "options": {"expires": ATRIUM_AUDIT_CHECKPOINT_INTERVAL_S},
        "tenant_schemas": ["public"],
    },
    "batch-recover": {
        "task": "inference.tasks.batch_recover",
        "schedule": 60.0,
        "tenant_schemas": ["public"],
    },
    "batch-results-expiry": {  # once per tenant: ended batches' results past ATRIUM_BATCH_RESULTS_RETENTION_DAYS
        "task": "inference.tasks.batch_results_expire",
        "schedule": crontab(minute=41),
    },
    "gdpr-recover": {
        "task": "audit.tasks.gdpr_recover",
        "schedule": 60.0,
        "tenant_schemas": ["public"],
    },
    "quota-reservation-reap": {  # every tenant's reservations past their TTL: walked from the public schema
        "task": "access.tasks.quota_reservations_reap_all",
        "schedule": env.float("ATRIUM_QUOTA_REAP_INTERVAL_S", default=60.0),
        "options": {"expires": env.float("ATRIUM_QUOTA_REAP_INTERVAL_S", default=60.0)},
        "tenant_schemas": ["public"],
    },
    "audit-siem": ATRIUM_SIEM_BEAT_ENTRY,  # noqa: F405 - streams the audit trails to SIEMs (settings/siem.py)
    "beat-heartbeat": {
        "task": "config.beat_heartbeat",
        "schedule": env.float("ATRIUM_BEAT_HEARTBEAT_S", default=30.0),
        "options": {"expires": env.float("ATRIUM_BEAT_HEARTBEAT_S", default=30.0)},
        "tenant_schemas": ["public"],
    },
}
# Only the beat holding this Redis lock sends periodic tasks; a second beat waits (config/beat.py).
ATRIUM_BEAT_LOCK_TTL_S = env.float("ATRIUM_BEAT_LOCK_TTL_S", default=30.0)

# --- REST framework, schema --------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "access.authentication.ApiKeyAuthentication",
        "access.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "config.http.drf_exception_handler",  # every /api/ error in the one error shape
    "DEFAULT_PARSER_CLASSES": [
        "config.request_limits.LimitedJSONParser",  # JSON nesting depth limit: a 400, not a RecursionError 500
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "Atrium API",
    "DESCRIPTION": "Conversations API of the Atrium web chat. The Anthropic-compatible API lives at /v1/.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Upstream providers ------------------------------------------------------------------------
# None means the SDK's own default endpoint. The demo and the tests point these at the simulator.
ATRIUM_ANTHROPIC_BASE_URL = env.str("ATRIUM_ANTHROPIC_BASE_URL", default="") or None
ATRIUM_BEDROCK_BASE_URL = env.str("ATRIUM_BEDROCK_BASE_URL", default="") or None
ATRIUM_VERTEX_BASE_URL = env.str("ATRIUM_VERTEX_BASE_URL", default="") or None
ATRIUM_PROVIDER_ORDER = env.list(
    "ATRIUM_PROVIDER_ORDER",
    default=["anthropic", "bedrock:us-east-1", "bedrock:us-west-2", "vertex:us-east5"],
)
ATRIUM_REQUEST_DEADLINE_S = env.float("ATRIUM_REQUEST_DEADLINE_S", default=120.0)
ATRIUM_CONNECT_TIMEOUT_S = env.float("ATRIUM_CONNECT_TIMEOUT_S", default=5.0)  # per attempt, TCP + TLS
ATRIUM_CATALOG_CACHE_S = env.float("ATRIUM_CATALOG_CACHE_S", default=10.0)  # edits reach other processes after this
ATRIUM_MODEL_NAMES_HOOK = "inference.catalog.selectors.known_model_names"
# Circuit breaker per provider target, shared through Redis by every process.
ATRIUM_BREAKER_FAILURES = env.int("ATRIUM_BREAKER_FAILURES", default=3)  # consecutive failures that open it
ATRIUM_BREAKER_COOLDOWN_S = env.float("ATRIUM_BREAKER_COOLDOWN_S", default=30.0)  # open, before a half-open probe
ATRIUM_BREAKER_PROBE_TTL_S = env.float("ATRIUM_BREAKER_PROBE_TTL_S", default=10.0)  # one probe at a time, this long
# Time-to-first-byte budget of one attempt (s), then the next target is tried; per target or provider in
# ATRIUM_FIRST_BYTE_TIMEOUTS ("bedrock=8,vertex:us-east5=6"); a tenant's own value (its policy) wins.
ATRIUM_FIRST_BYTE_TIMEOUT_S = env.float("ATRIUM_FIRST_BYTE_TIMEOUT_S", default=5.0)
ATRIUM_FIRST_BYTE_TIMEOUTS = {key: float(value) for key, value in
                              env.dict("ATRIUM_FIRST_BYTE_TIMEOUTS", default={}).items()}
ATRIUM_HEDGE_DELAY_MS = env.float("ATRIUM_HEDGE_DELAY_MS", default=0)  # >0: also ask the next target after this
ATRIUM_ATTEMPT_THREADS = env.int("ATRIUM_ATTEMPT_THREADS", default=64)  # threads running attempts, per process
# Static Vertex AI access token (for tokens refreshed outside Atrium, and the simulator); else Google credentials.
ATRIUM_VERTEX_ACCESS_TOKEN = env.str("ATRIUM_VERTEX_ACCESS_TOKEN", default="") or None
ATRIUM_VERTEX_PROJECT_ID = env.str("ANTHROPIC_VERTEX_PROJECT_ID", default="") or None
ATRIUM_STS_ENDPOINT_URL = env.str("ATRIUM_STS_ENDPOINT_URL", default="") or None  # assume-role mode; None = AWS
from config.settings.providers import *  # noqa: E402, F403 - warm clients, anthropic-beta providers, batches

ATRIUM_HEALTH_HISTORY_DAYS = env.int("ATRIUM_HEALTH_HISTORY_DAYS", default=7)
ATRIUM_HEALTH_CHECK_TIMEOUT_S = env.float("ATRIUM_HEALTH_CHECK_TIMEOUT_S", default=10.0)

# --- Email -------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="atrium@localhost")

from config.settings.access import *  # noqa: E402, F403 - SSO, bearer tokens, API keys, attachments

# Request bodies up to the Anthropic API's own limit (images and documents travel base64 in the JSON); larger is a
# 413 request_too_large on /v1/.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("ATRIUM_MAX_REQUEST_BYTES", default=32 * 1024 * 1024)
# Only these path prefixes accept bodies that large (config/request_limits.py); every other route (sign-in, forms,
# the admin) refuses a body over ATRIUM_FORM_MAX_BYTES before reading it.
ATRIUM_LARGE_BODY_PREFIXES = env.list("ATRIUM_LARGE_BODY_PREFIXES", default=["/v1/", "/api/conversations/"])
ATRIUM_FORM_MAX_BYTES = env.int("ATRIUM_FORM_MAX_BYTES", default=1024 * 1024)
ATRIUM_JSON_MAX_DEPTH = env.int("ATRIUM_JSON_MAX_DEPTH", default=64)  # nesting of a JSON body on /v1/ and /api/
CSRF_FAILURE_VIEW = "config.error_views.csrf_failure"

# Split by concern (a settings module stays under 400 lines, tests/architecture/test_module_size.py).
from config.settings.observability import *  # noqa: E402,F403
from config.settings.records import *  # noqa: E402,F403
