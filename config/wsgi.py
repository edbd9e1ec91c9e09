"""WSGI entry point for gunicorn (threads; see config/gunicorn.py)."""

import os

from django.core.wsgi import get_wsgi_application

from config.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Before the application loads: the Django instrumentation adds its middleware to the settings.
tracing_setup(role="web")
application = get_wsgi_application()
