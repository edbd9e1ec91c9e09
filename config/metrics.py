"""/metrics in Prometheus text format, on the public host only (tenant hosts would leak other tenants' labels).

Set ATRIUM_METRICS_TOKEN to require `Authorization: Bearer <token>`. With PROMETHEUS_MULTIPROC_DIR set (several
gunicorn workers), the numbers of every worker process are aggregated.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

import inference.metrics  # noqa: F401  (registers the collectors)


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.ATRIUM_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("metrics need the bearer token (ATRIUM_METRICS_TOKEN)\n", status=401,
                                content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return HttpResponse(data, content_type=CONTENT_TYPE_LATEST)
