"""The Celery app. tenant-schemas-celery's CeleryApp runs each task in the schema it was sent from."""

from __future__ import annotations

import os

from celery.signals import worker_process_init
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Every task pauses while its tenant is suspended (config/tasks_base.py).
app = CeleryApp("atrium", task_cls="config.tasks_base:AtriumTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect(weak=False)
def _tracing(**_kwargs: object) -> None:
    """Each prefork child sets its own tracer up (spans are exported from the process that made them)."""
    from config.tracing import tracing_setup

    tracing_setup(role="worker")


@worker_process_init.connect(weak=False)
def _warm_provider_clients(**_kwargs: object) -> None:
    """Each prefork child builds its provider clients and renews their credentials (inference/warm.py)."""
    from inference.warm import warm_start

    warm_start()


HEARTBEAT_KEY = "atrium:beat:heartbeat"


@app.task(name="config.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Sent by beat every ATRIUM_BEAT_HEARTBEAT_S: a counter and the time of the last run, so monitoring (and the
    cluster test) sees that exactly one beat is sending periodic tasks and that a worker runs them."""
    import time

    from config.redis import redis_client

    pipe = redis_client().pipeline()
    pipe.hincrby(HEARTBEAT_KEY, "runs", 1)
    pipe.hset(HEARTBEAT_KEY, "last", f"{time.time():.3f}")
    pipe.execute()
