"""The per-process caches of the API hot path (config/tenant_cache.py): served from memory, emptied by PostgreSQL
at commit (LISTEN/NOTIFY) whatever wrote the change, never filled with a value read before an invalidation,
bypassed while the listener is down."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context

from access.errors import AuthenticationFailed
from config import tenant_cache
from config.tenant_cache import TenantCache, cache_listener_ready


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for something another thread or process does (not a speed limit: a bound on waiting)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def served_from_memory(call: Callable[[], Any]) -> Any:
    """Call until a call costs no query (the notifications of the set-up's own writes may arrive after the
    first read, and rightly empty what it cached); returns that call's result."""
    results: list[Any] = []

    def check() -> bool:
        with CaptureQueriesContext(connection) as queries:
            results.append(call())
        return len(queries) == 0

    eventually(check, "a call answered from the cache")
    return results[-1]


def other_connection() -> psycopg.Connection[Any]:
    """A second database session, as a script, a psql prompt or another process would use."""
    params = dict(connection.get_connection_params())
    for name in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(name, None)
    return psycopg.connect(autocommit=True, **params)


@pytest.fixture(scope="module", autouse=True)
def _listener_stopped_afterwards() -> Iterator[None]:
    """The listener holds a connection to the test database; let it go before anything may drop that database."""
    yield
    tenant_cache.cache_listener_stop()
    assert tenant_cache._listener.thread is None and not tenant_cache._listener.connected


@pytest.fixture
def caches_on(settings: Any, committed: None) -> None:
    settings.ATRIUM_AUTH_CACHE_S = 300  # far longer than any test: what empties an entry here is the database
    settings.ATRIUM_TENANT_CACHE_S = 300
    assert cache_listener_ready(), "the cache listener did not subscribe"


@pytest.fixture
def key_user(caches_on: None) -> Iterator[tuple[Any, str]]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from access.services import api_key_create

    with schema_context("alpha"):
        user = get_user_model().objects.create_user(username=f"cache-{uuid.uuid4().hex[:8]}")
        user.groups.add(Group.objects.get(name="basic_user"))
        row, raw = api_key_create(user=user, name="cache test")
    yield row, raw
    with schema_context("alpha"):
        get_user_model().objects.filter(pk=user.pk).delete()


def authenticate(raw: str) -> Any:
    from access.services import api_key_authenticate

    with schema_context("alpha"):
        return api_key_authenticate(raw_key=raw, tenant_label="alpha")


def refused(raw: str, fragment: str) -> bool:
    try:
        authenticate(raw)
    except AuthenticationFailed as exc:
        return fragment in exc.message
    return False


def test_a_cached_key_costs_no_query_and_a_bare_update_elsewhere_empties_it(key_user: tuple[Any, str]) -> None:
    row, raw = key_user
    with schema_context("alpha"):
        key = served_from_memory(lambda: authenticate(raw))
    assert key.user.has_perm("access.use_sonnet") and not key.user.has_perm("access.use_opus")

    with other_connection() as other:  # no Django signal, no service: only the trigger can announce it
        other.execute("UPDATE alpha.access_apikey SET revoked_at = now() WHERE id = %s", [row.id])
    eventually(lambda: refused(raw, "was revoked"), "the revocation reached this process's cache")


def test_a_key_served_from_memory_is_the_row_the_orm_reads_and_a_fresh_object_each_call(
        key_user: tuple[Any, str]) -> None:
    """The key and its user built from the cached rows (access.services._loaded, without Model.__init__) are what
    the ORM builds: every field, a saved instance of the default database, the user attached as select_related
    attaches it; and each call gets its own objects, so a change to one is never seen by another call."""
    from django.contrib.auth import get_user_model

    from access.models import ApiKey

    row, raw = key_user
    with schema_context("alpha"):
        key = served_from_memory(lambda: authenticate(raw))
        orm = ApiKey.objects.select_related("user").get(pk=row.pk)
        again = authenticate(raw)
    fields = [f.attname for f in ApiKey._meta.concrete_fields if f.attname != "last_used_at"]
    assert [getattr(key, f) for f in fields] == [getattr(orm, f) for f in fields]
    user_fields = [f.attname for f in get_user_model()._meta.concrete_fields]
    assert [getattr(key.user, f) for f in user_fields] == [getattr(orm.user, f) for f in user_fields]
    assert (key._state.adding, key._state.db, key.user._state.adding, key.user._state.db) == (
        False, "default", False, "default")
    assert key.user is key._state.fields_cache["user"] and key.user_id == key.user.pk
    assert key.get_deferred_fields() == set() and key.user.get_deferred_fields() == set()
    assert again is not key and again.user is not key.user and again.user._perm_cache is not key.user._perm_cache
    key.user.is_active = False
    assert again.user.is_active and authenticate(raw).user.is_active


def test_a_model_with_an_init_receiver_is_still_built_by_its_init() -> None:
    """A model some receiver watches at construction (post_init) is built by Model.__init__, the receiver
    called, as from_db would."""
    from django.contrib.auth.models import Group
    from django.db.models import signals

    from access.services import _loaded, _needs_init

    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance)

    signals.post_init.connect(receiver, sender=Group)
    _needs_init.cache_clear()
    try:
        group = _loaded(Group, {"id": 7, "name": "watched"})
    finally:
        signals.post_init.disconnect(receiver, sender=Group)
        _needs_init.cache_clear()
    assert seen == [group] and (group.pk, group.name, group._state.adding) == (7, "watched", False)
    plain = _loaded(Group, {"id": 8, "name": "plain"})
    assert seen == [group] and (plain.pk, plain.name, plain._state.adding, plain._state.db) == (
        8, "plain", False, "default")


def test_a_role_change_reaches_the_cached_permissions(key_user: tuple[Any, str]) -> None:
    from django.contrib.auth.models import Group

    row, raw = key_user
    assert not authenticate(raw).user.has_perm("access.use_opus")
    with schema_context("alpha"):
        row.user.groups.add(Group.objects.get(name="power_user"))
    eventually(lambda: authenticate(raw).user.has_perm("access.use_opus"), "the new role's permission")


def test_a_key_last_use_does_not_empty_the_cache(key_user: tuple[Any, str]) -> None:
    from access.services import _key_cache

    row, raw = key_user
    with schema_context("alpha"):
        served_from_memory(lambda: authenticate(raw))
    with other_connection() as other:
        other.execute("UPDATE alpha.access_apikey SET last_used_at = now() WHERE id = %s", [row.id])
        other.execute("SELECT pg_sleep(0.2)")  # time for a notification, had one been sent
    assert _key_cache.peek("alpha", row.prefix) is not None


def test_a_value_read_before_an_invalidation_is_not_stored(caches_on: None) -> None:
    cache: TenantCache[str] = TenantCache(f"race-{uuid.uuid4().hex[:6]}")

    def slow_read() -> str:
        tenant_cache._listener.invalidate("alpha")  # a commit lands while the row is being read
        return "stale"

    assert cache.get_or_load("alpha", "k", slow_read) == "stale"
    assert cache.peek("alpha", "k") is None
    assert cache.get_or_load("alpha", "k", lambda: "fresh") == "fresh"
    assert cache.peek("alpha", "k") == "fresh"
    assert cache.get_or_load("beta", "k", lambda: "other tenant") == "other tenant"
    tenant_cache._listener.invalidate("alpha")
    assert cache.peek("alpha", "k") is None and cache.peek("beta", "k") == "other tenant"


def test_a_forked_process_serves_nothing_its_parent_cached(caches_on: None) -> None:
    """A gunicorn worker or Celery child is forked: its parent's entries (and listener) are not its own, so
    nothing inherited may answer before the child has its own subscription."""
    import os

    cache: TenantCache[str] = TenantCache(f"fork-{uuid.uuid4().hex[:6]}")
    cache.get_or_load("alpha", "k", lambda: "parent's")
    assert cache.peek("alpha", "k") == "parent's"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child answers, then leaves without running anything else of the session
        os.close(read_end)
        os.write(write_end, repr(cache.peek("alpha", "k")).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    assert answer == "None"
    assert cache.peek("alpha", "k") == "parent's"  # the parent's own entry is still its own


def test_while_the_listener_is_down_nothing_is_served_from_memory(caches_on: None) -> None:
    cache: TenantCache[str] = TenantCache(f"down-{uuid.uuid4().hex[:6]}")
    cache.get_or_load("alpha", "k", lambda: "v")
    assert cache.peek("alpha", "k") == "v"
    epoch = tenant_cache._listener.epoch
    with other_connection() as other:
        killed = other.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                               "AND datname = current_database() AND pid <> pg_backend_pid()",
                               [tenant_cache.APPLICATION_NAME]).fetchall()
    assert killed, "no listener connection found"
    eventually(lambda: tenant_cache._listener.epoch > epoch, "the listener noticed its connection died")
    assert cache.peek("alpha", "k") is None  # emptied: a change may have been missed meanwhile
    eventually(cache_listener_ready, "the listener reconnected")
    assert cache.get_or_load("alpha", "k", lambda: "again") == "again"
    assert cache.peek("alpha", "k") == "again"


def test_a_tenant_change_empties_the_host_cache(caches_on: None) -> None:
    from django.test import Client

    from config.middleware import _tenants
    from tenants.models import Tenant

    assert Client(HTTP_HOST="alpha.localhost").get("/healthz").status_code == 200
    tenant = _tenants.peek("public", "alpha.localhost")
    assert tenant is not None and tenant.schema_name == "alpha"
    original = tenant.max_tokens_per_request
    try:
        Tenant.objects.filter(schema_name="alpha").update(max_tokens_per_request=original + 1)
        eventually(lambda: _tenants.peek("public", "alpha.localhost") is None, "the host cache forgot alpha")
    finally:
        Tenant.objects.filter(schema_name="alpha").update(max_tokens_per_request=original)


@pytest.fixture
def notice_tenant(caches_on: None) -> Any:
    """A tenant of its own with a processing notice (the shared tenants' notice history stays as tests expect)."""
    from tenants.models import Tenant
    from tenants.services import tenant_provision

    tenant = Tenant.objects.filter(schema_name="noticecache").first()
    if tenant is None:
        tenant = tenant_provision(slug="noticecache", name="Notice cache").tenant
    tenant.processing_notice = f"Notice {uuid.uuid4().hex[:6]}"
    Tenant.objects.filter(pk=tenant.pk).update(processing_notice=tenant.processing_notice)
    from audit.services import notice_publish

    with schema_context(tenant.schema_name):
        notice_publish(tenant)
    return tenant


def test_consent_is_cached_until_it_is_withdrawn(notice_tenant: Any) -> None:
    from django.contrib.auth import get_user_model

    from audit.services import consent_give, consent_required, consent_withdraw, notice_current

    tenant = notice_tenant
    with schema_context(tenant.schema_name):
        user = get_user_model().objects.create_user(username=f"consent-{uuid.uuid4().hex[:8]}")
        notice = notice_current(tenant)
        assert notice is not None and consent_required(user, tenant) == notice
        consent_give(user, notice)
        assert served_from_memory(lambda: consent_required(user, tenant)) is None
        consent_withdraw(user)
        eventually(lambda: consent_required(user, tenant) is not None, "the withdrawal is seen")


def test_the_url_routing_settings_are_read_again_when_they_change(settings: Any) -> None:
    """TenantMiddleware reads django-tenants' URL routing settings once (config.middleware._url_routing), and again
    after a setting changes (the tests' overrides)."""
    from config import middleware

    assert middleware._url_routing() == (False, "public", settings.PUBLIC_SCHEMA_URLCONF)
    settings.PUBLIC_SCHEMA_URLCONF = "config.urls"
    assert middleware._url_routing() == (False, "public", "config.urls")


def test_a_host_served_from_the_cache_is_routed_as_django_tenants_routes_it(caches_on: None) -> None:
    """A cache hit sets the request's URLconf as django-tenants' setup_url_routing does: the public site's for the
    public tenant, none (the default) for a tenant."""
    from django.test import RequestFactory
    from django_tenants.middleware.main import TenantMainMiddleware

    from config.middleware import TenantMiddleware, _tenants

    middleware = TenantMiddleware(lambda request: None)  # type: ignore[arg-type, return-value]
    for host, urlconf in (("alpha.localhost", None), ("localhost", "config.urls_public")):
        def cached(host: str = host) -> bool:
            assert middleware.process_request(RequestFactory(HTTP_HOST=host).get("/")) is None
            return _tenants.peek("public", host) is not None

        eventually(cached, f"{host} in the host cache")
        hit = RequestFactory(HTTP_HOST=host).get("/")
        assert middleware.for_hostname(hit, host) is None
        expected = RequestFactory(HTTP_HOST=host).get("/")
        expected.tenant = hit.tenant  # type: ignore[attr-defined]
        TenantMainMiddleware.setup_url_routing(expected)
        assert getattr(hit, "urlconf", None) == getattr(expected, "urlconf", None) == urlconf
