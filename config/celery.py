"""The Celery app. tenant-schemas-celery's CeleryApp runs each task in the schema it was sent from."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from celery.signals import worker_process_init
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Every task pauses while its tenant is suspended (config/tasks_base.py).
app = CeleryApp("atrium", task_cls="config.tasks_base:AtriumTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect(weak=False)
def _sentinel(sender: Any = None, source: Any = None, **_kwargs: Any) -> None:
    sentinel_configure(source)


def sentinel_configure(conf: Any, environ: MutableMapping[str, str] = os.environ) -> None:
    """A `redis+sentinel://` broker or result backend URL becomes kombu's `sentinel://…;sentinel://…` with the
    master's name in the transport options (config/redis_urls.py), so every role takes the same URL.

    Celery reads CELERY_BROKER_URL / CELERY_RESULT_BACKEND from the environment before its configuration, so
    the translated URL goes there too, and the master's name beside it (ATRIUM_…_MASTER) for a process that
    inherits the translated environment."""
    from config.redis_urls import celery_sentinel

    for env_name, url_key, options_key in (("CELERY_BROKER_URL", "broker_url", "broker_transport_options"),
                                           ("CELERY_RESULT_BACKEND", "result_backend",
                                            "result_backend_transport_options")):
        url = str(environ.get(env_name) or conf.get(url_key) or "")
        translated = celery_sentinel(url)
        master_env = f"ATRIUM_{env_name}_MASTER"
        if translated is None and url.startswith("sentinel://") and environ.get(master_env):
            translated = (url, {"master_name": environ[master_env]})
        if translated is None:
            continue
        kombu_url, options = translated
        if environ.get(env_name):
            environ[env_name] = kombu_url
            environ[master_env] = str(options["master_name"])
        conf[url_key] = kombu_url
        conf[options_key] = {**(conf.get(options_key) or {}), **options}


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
