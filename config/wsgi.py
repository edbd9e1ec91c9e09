"""WSGI entry point: `python -m config.serve` (granian) loads it in each worker; gunicorn can (config/gunicorn.py)."""

import os

from django.core.wsgi import get_wsgi_application

from config.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Before the application loads: the Django instrumentation adds its middleware to the settings.
tracing_setup(role="web")
handler = get_wsgi_application()

from config.api_lane import ApiLane  # noqa: E402 - needs the apps loaded

# /v1/* past Django's handler and middleware chain, with the same behaviour (config/api_lane.py); the rest is Django's.
application = ApiLane(handler)  # type: ignore[arg-type]

if os.environ.get("ATRIUM_WEB_SERVER") == "granian":  # a worker of `python -m config.serve`
    from config.serve import install_wsgi_wrapper, limits, worker_init

    # granian's per-request wrapper, ours: it checks the request limits itself (config.serve.wsgi_callback_wrapper)
    if not install_wsgi_wrapper():
        application = limits(application)  # type: ignore[assignment]
    else:
        application.server_closes_lists = True  # the wrapper closes a list once granian has its bytes
    worker_init()
