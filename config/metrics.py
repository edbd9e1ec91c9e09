"""/metrics in Prometheus text format, on the public host only (tenant hosts would leak other tenants' labels).

Never open: a scraper sends `Authorization: Bearer <ATRIUM_METRICS_TOKEN>`, a person signs in to the platform admin
(an active staff user of the public host). Anything else is a 401. With PROMETHEUS_MULTIPROC_DIR set (several
gunicorn workers), the numbers of every worker process are aggregated.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

import inference.metrics  # noqa: F401  (registers the collectors)
from audit.siem.metrics import COLLECTOR as SIEM_COLLECTOR
from config.admin_sites import on_public_host


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.ATRIUM_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())
    user: Any = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff
                and on_public_host(request))


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        response = HttpResponse("metrics need the bearer token (ATRIUM_METRICS_TOKEN) or a platform staff sign-in\n",
                                status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    # Read from the database at scrape time: the same whichever process streams.
    siem = CollectorRegistry(auto_describe=False)
    siem.register(SIEM_COLLECTOR)
    data += generate_latest(siem)
    return HttpResponse(data, content_type=CONTENT_TYPE_LATEST)
