"""Production: every secret must come from the environment; the process refuses to start otherwise."""

from config.env import env, require
from config.settings.base import *  # noqa: F403

DEBUG = False
SECRET_KEY = require("DJANGO_SECRET_KEY")
ATRIUM_ENCRYPTION_KEYS = [k.strip() for k in require("ATRIUM_ENCRYPTION_KEYS").split(",") if k.strip()]
ATRIUM_PLATFORM_AUDIT_KEY = require("ATRIUM_PLATFORM_AUDIT_KEY")
ATRIUM_AUDIT_CHECKPOINT_KEY = require("ATRIUM_AUDIT_CHECKPOINT_KEY")

SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS on by default (a year, subdomains included: every tenant host is a subdomain of the base domain). Opt out with
# DJANGO_HSTS_SECONDS=0, e.g. while a domain is still served over plain HTTP somewhere (docs/security.md).
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
