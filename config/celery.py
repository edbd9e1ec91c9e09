"""The Celery app. tenant-schemas-celery's CeleryApp runs each task in the schema it was sent from."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = CeleryApp("atrium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

