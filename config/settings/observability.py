"""Settings: logging (never prompts, completions or keys) and who may read /metrics. Imported by base.py."""

from __future__ import annotations

from config.env import env

# --- Logging -----------------------------------------------------------------------------------
# Never log prompts, completions or keys: loggers get ids and counts only.
ATRIUM_LOG_FORMAT = env.str("ATRIUM_LOG_FORMAT", default="text")  # "text" or "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": ATRIUM_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("ATRIUM_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # HTTP clients log every upstream request at INFO (URL and status): noise per model call, and a cost on
        # the hot path. Atrium logs failed attempts itself.
        **{name: {"level": env.str("ATRIUM_HTTP_CLIENT_LOG_LEVEL", default="WARNING")}
           for name in ("httpx", "httpx2", "httpcore", "anthropic", "botocore", "urllib3")},
    },
}

# /metrics (public host): `Authorization: Bearer <this>`, or a signed-in platform staff user; nobody else.
ATRIUM_METRICS_TOKEN = env.str("ATRIUM_METRICS_TOKEN", default="")
