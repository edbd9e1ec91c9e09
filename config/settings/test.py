"""Test settings: real PostgreSQL and Redis (see config/devstack.py), fast hashing, no outside network."""

from config.env import env, label_key
from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

DEBUG = False
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/9")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
SECRET_KEY = "test-only-secret-key-not-for-production"  # noqa: S105
ATRIUM_ENCRYPTION_KEYS = env.list(
    "ATRIUM_ENCRYPTION_KEYS",
    default=[label_key("test-key-0-"), label_key("test-key-1-")],
)
ATRIUM_PLATFORM_AUDIT_KEY = env.str("ATRIUM_PLATFORM_AUDIT_KEY", default="test-only-platform-audit-key")
ATRIUM_AUDIT_CHECKPOINT_KEY = env.str("ATRIUM_AUDIT_CHECKPOINT_KEY", default="test-only-audit-checkpoint-key")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["CONN_MAX_AGE"] = 0
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# A server process started by a browser test writes its mail into the test's outbox directory instead (locmem
# mail would stay inside that process); tests/access/conftest.py sets it for its web server.
if env.str("ATRIUM_TEST_EMAIL_DIR", default=""):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = env.str("ATRIUM_TEST_EMAIL_DIR")
# Tests read usage and audit rows right after a call, inside their own transaction.
ATRIUM_RECORD_IN_BACKGROUND = env.bool("ATRIUM_RECORD_IN_BACKGROUND", default=False)
# Tests edit tenant policy, keys and roles inside a transaction that is rolled back (so no NOTIFY is ever
# delivered) and expect the next request to see it; tests/tenants/test_cache_invalidation.py turns the caches on.
ATRIUM_TENANT_CACHE_S = env.float("ATRIUM_TENANT_CACHE_S", default=0.0)
ATRIUM_AUTH_CACHE_S = env.float("ATRIUM_AUTH_CACHE_S", default=0.0)
CELERY_TASK_ALWAYS_EAGER = False
MEDIA_ROOT = env.path("ATRIUM_MEDIA_ROOT", default="/tmp/atrium-test-media")  # noqa: S108
# Next to this run's media (one per engineer / CI job); emptied when the test database is created.
ATRIUM_AUDIT_CHECKPOINT_DIR = env.str("ATRIUM_AUDIT_CHECKPOINT_DIR", default=f"{MEDIA_ROOT}-audit-checkpoints")
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
# The tests' identity providers (tests/node/idp) listen on loopback over http: allow-listed, as an operator would
# allow-list an internal IdP. tests/security/test_outbound.py checks that anything else on loopback is refused.
ATRIUM_OUTBOUND_ALLOWED_HOSTS = env.list("ATRIUM_OUTBOUND_ALLOWED_HOSTS", default=["127.0.0.1"])
# The suite signs staff and compliance users in with force_login and reaches the admin and the console directly;
# tests/security/test_mfa.py turns the second factor on and checks its enforcement.
ATRIUM_MFA_ENFORCED = env.bool("ATRIUM_MFA_ENFORCED", default=False)
# Test processes (web servers, Celery workers) build provider clients on first use; tests/inference/test_warm.py
# turns the warm-up on where it is what is tested.
ATRIUM_WARM_CLIENTS = env.bool("ATRIUM_WARM_CLIENTS", default=False)
