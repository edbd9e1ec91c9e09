"""A deactivated tenant is suspended everywhere: every path of its hosts answers "suspended", nothing else runs.

Checked in TenantMiddleware right after the host is resolved, before sessions, authentication, the API fast path
or any view: sign-in, existing sessions, the admin, /api/, /v1/ and the web chat are refused alike. The host ->
tenant cache is emptied by the database (NOTIFY) when the tenant row changes, so deactivation applies to every
process within moments of its commit.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from config.http import error_body

MESSAGE = "This organisation's account is suspended. Contact your administrator."
# Liveness and readiness describe the process, not the tenant; static files carry no tenant data.
_EXEMPT_PREFIXES = ("/healthz", "/readyz", "/static/")


def tenant_suspended(tenant: Any) -> bool:
    return tenant is not None and getattr(tenant, "schema_name", "public") != "public" and not getattr(
        tenant, "is_active", True)


def suspended_response(request: HttpRequest) -> HttpResponse | None:
    """The refusal for this path, or None when the path stays open (probes, static files)."""
    path = request.path_info
    if path.startswith(_EXEMPT_PREFIXES):
        return None
    if path.startswith(("/v1/", "/api/")):
        # The one error shape (config/http.py): the SDKs raise PermissionDeniedError with this message.
        return HttpResponse(json.dumps(error_body(403, MESSAGE)), status=403, content_type="application/json")
    html = render_to_string("errors/error.html", {"title": "Tenant suspended", "message": MESSAGE, "status": 403})
    return HttpResponse(html, status=403, content_type="text/html; charset=utf-8")
