"""gunicorn settings: threaded workers, because streaming answers hold a thread each while they last."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(max(2, multiprocessing.cpu_count()))))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
# A streamed answer can take minutes; the router owns the per-request deadline.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))
graceful_timeout = 30
# Request line and header limits, refused by gunicorn itself before Django sees the request: a request line over
# limit_request_line is a 414 ("Request-URI Too Long"), a header over limit_request_field_size or more than
# limit_request_fields headers a 431. Those answers are gunicorn's own short HTML, not Atrium's JSON: a proxy in front
# (docs/security.md) can replace them. The field size leaves room for a bearer JWT carrying many groups.
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
limit_request_fields = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELDS", "100"))
limit_request_field_size = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", "16384"))
keepalive = 5
accesslog = "-"
# Access log lines carry the path and status only, never bodies or headers (no keys, no prompts).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


# Prometheus multiprocess mode (PROMETHEUS_MULTIPROC_DIR set): start from an empty directory, and drop the live
# gauges of a worker that exits, so /metrics sums the workers that exist.
def on_starting(server):  # type: ignore[no-untyped-def]
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


# The record writer starts with the worker, so it replays what a killed worker journaled (inference/recorder.py).
def post_worker_init(worker):  # type: ignore[no-untyped-def]
    from config.serve import heap_freeze
    from config.tenant_cache import cache_listener_boot
    from inference.records import recorder_start
    from inference.warm import warm_start

    recorder_start()
    warm_start()  # provider clients built now and renewed before their credentials expire (inference/warm.py)
    cache_listener_boot()  # the per-process caches answer from the first request on (config/tenant_cache.py)
    heap_freeze()  # the boot's heap out of the collector's reach (config/serve.py)
