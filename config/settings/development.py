"""Local development and the `make run` demo: a fixed dev-only secret, simulator upstream.

Debug is off unless DJANGO_DEBUG=1: the demo is what a new user tries first, and Django's debug pages list every
URL pattern and setting (issue 14). Errors render Atrium's own pages (config/error_views.py) either way."""

from config.env import env, label_key
from config.settings.base import *  # noqa: F403
from config.settings.base import ATRIUM_AUDIT_CHECKPOINT_KEY, ATRIUM_ENCRYPTION_KEYS, ATRIUM_PLATFORM_AUDIT_KEY

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Development only. production.py has no default and refuses to start without DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-insecure-only-for-make-run-never-in-production")
if not ATRIUM_ENCRYPTION_KEYS:
    # A fixed development key so `make run` keeps decrypting what it stored on the previous run.
    ATRIUM_ENCRYPTION_KEYS = [label_key("dev-only-key-for-make-run-")]
# Development only: fixed audit keys so the demo's platform trail keeps verifying from one run to the next.
ATRIUM_PLATFORM_AUDIT_KEY = ATRIUM_PLATFORM_AUDIT_KEY or "dev-only-platform-audit-key"
ATRIUM_AUDIT_CHECKPOINT_KEY = ATRIUM_AUDIT_CHECKPOINT_KEY or "dev-only-audit-checkpoint-key"
