"""Request middleware: request ids for log correlation, and the tenant lookup with an in-process cache."""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.base import BaseHandler
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, set_urlconf
from django.urls import base as urls_base
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import get_public_schema_name, has_multi_type_tenants

from config import thread_locals
from config.ids import uuid4_hex
from config.settings_once import setting_number
from config.suspended import suspended_response, tenant_suspended
from config.tenant_cache import TenantCache
from config.tracing import current_trace_id

_URLCONFS: Any = urls_base._urlconfs  # type: ignore[attr-defined]  # django.urls' per-thread URLconf (asgiref Local)
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("atrium_request_id", default="")
_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current_request_id() -> str:
    return _request_id.get()


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token, request_id = request_id_enter(request)
        try:
            response = self.get_response(request)
        finally:
            request_id_exit(token)
        response["request-id"] = request_id
        return response


def request_id_enter(request: HttpRequest) -> tuple[contextvars.Token[str], str]:
    """The request's id (its valid X-Request-Id, else a new one), set for this context and on the request with the
    trace id. Also the API lane's (config/api_lane.py)."""
    # META, not request.headers: building HttpHeaders (a pass over every META key) cost more than the lookup,
    # and nothing else on the /v1 path needs it.
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    request_id = incoming if _VALID.match(incoming) else f"req_{uuid4_hex()}"
    token = _request_id.set(request_id)
    request.request_id = request_id  # type: ignore[attr-defined]
    # Streamed answers are recorded after the request span ended: keep its trace id with the request.
    request.trace_id = current_trace_id()  # type: ignore[attr-defined]
    return token, request_id


def request_id_exit(token: contextvars.Token[str]) -> None:
    _request_id.reset(token)


def _tenant_cache_ttl() -> float:
    return setting_number("ATRIUM_TENANT_CACHE_S")


# host -> tenant, in the public schema's entries: emptied at once when a tenant or a domain changes.
_tenants: TenantCache[Any] = TenantCache("tenant_hosts", ttl=_tenant_cache_ttl)


_ABSENT: Any = object()
_routing: tuple[bool, str, Any] | None = None


def _url_routing() -> tuple[bool, str, Any]:
    """What django-tenants' setup_url_routing reads from the settings on each request (multi-type tenants, the
    public schema's name, PUBLIC_SCHEMA_URLCONF or _ABSENT), read once: two of them are missing from our settings
    and each read of a missing setting raised and caught an AttributeError (some 4 us of a cache hit's 6)."""
    global _routing
    routing = _routing
    if routing is None:
        routing = _routing = (bool(has_multi_type_tenants()), get_public_schema_name(),
                              getattr(settings, "PUBLIC_SCHEMA_URLCONF", _ABSENT))
    return routing


@receiver(setting_changed)
def _url_routing_forget(**kwargs: Any) -> None:
    global _routing
    _routing = None


class TenantMiddleware(TenantMainMiddleware):
    """django-tenants' middleware with the host -> tenant lookup cached in-process (config/tenant_cache.py).

    Saves a database round trip on every request. A change of a tenant or a domain empties the cache of every
    process when it commits; ATRIUM_TENANT_CACHE_S bounds an entry's life all the same (0 turns the cache off).
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        return self.for_hostname(request, self.hostname_or_empty(request))

    def hostname_or_empty(self, request: HttpRequest) -> str:
        """The request's host name for the tenant lookup; "" when Django refuses the host (ALLOWED_HOSTS)."""
        try:
            return str(self.hostname_from_request(request))
        except DisallowedHost:
            return ""

    def for_hostname(self, request: HttpRequest, hostname: str) -> HttpResponse | None:
        """process_request once the host name is known (the API lane remembers it per Host header value).

        On a cache hit, skip the detour through the public schema; and when this thread's connection is
        already on the tenant (the previous request was for it), leave its search path alone: django-tenants
        would reset it and pay a `SET search_path` round trip on the next query."""
        tenant: Any = _tenants.peek("public", hostname) if hostname else None
        if tenant is None:
            response: HttpResponse | None = super().process_request(request)  # fills the cache (get_tenant)
            if response is None and tenant_suspended(getattr(request, "tenant", None)):
                return suspended_response(request)
            return response
        if tenant_suspended(tenant):
            suspended = suspended_response(request)
            if suspended is not None:
                return suspended
        tenant.domain_url = hostname
        request.tenant = tenant  # type: ignore[attr-defined]
        # what `connection` looks up on each attribute, read from this thread's connections (config.thread_locals)
        conn: Any = thread_locals.get(connections._connections, DEFAULT_DB_ALIAS)  # type: ignore[attr-defined]
        if conn is None:
            conn = connections[DEFAULT_DB_ALIAS]
        if getattr(conn, "tenant", None) is not tenant or getattr(conn, "schema_name", None) != getattr(
                tenant, "schema_name", ""):
            conn.set_tenant(tenant)
        multi_type, public_schema, public_urlconf = _url_routing()
        if multi_type:
            self.setup_url_routing(request)
        elif public_urlconf is not _ABSENT and getattr(tenant, "schema_name", None) == public_schema:
            request.urlconf = public_urlconf  # type: ignore[attr-defined]
        return None

    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        """The database lookup (a cache miss); remembered for the next requests."""
        return _tenants.get_or_load("public", hostname, lambda: super(TenantMiddleware, self).get_tenant(
            domain_model, hostname))


class ApiFastPathMiddleware:
    """Serves the Anthropic-compatible API (/v1/) straight from here, past the browser middleware below it.

    Sessions, CSRF, cookie authentication, messages and frame options mean nothing to an API authenticated by a
    key or a bearer token on every call, and running them cost about a quarter of the gateway's own latency
    (bench/overhead.py). Everything above this middleware (tenant, request id, security headers) still applies;
    the /v1 views render their own errors (Anthropic's JSON shape) and need no CSRF exemption on this path.
    """

    PREFIX = "/v1/"
    HOT = frozenset({"/v1/messages", "/v1/models"})  # resolved once per URLconf, then looked up

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.handler = BaseHandler()  # only for resolve_request (the tenant's URLconf, resolver_match)
        self._matches: dict[tuple[str, str], ResolverMatch] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith(self.PREFIX):
            return self.get_response(request)
        key = (str(getattr(request, "urlconf", "")), path)
        resolver_match = self._matches.get(key)
        if resolver_match is None:
            try:
                resolver_match = self.handler.resolve_request(request)
            except Resolver404:  # a site without /v1/ (the public one): the usual 404
                return self.get_response(request)
            if path in self.HOT:
                self._matches[key] = resolver_match
        else:
            urlconf = getattr(request, "urlconf", None)
            if urlconf is not None or thread_locals.has(_URLCONFS, "value"):  # set_urlconf(None) with none: no-op
                set_urlconf(urlconf)
            request.resolver_match = resolver_match
        response: HttpResponse = resolver_match.func(request, *resolver_match.args, **resolver_match.kwargs)
        return response
