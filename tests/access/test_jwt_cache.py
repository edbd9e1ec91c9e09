"""Bearer JWTs are cached like API keys (access.authentication): a token's signature and claims are checked once,
later calls with it cost no query and no verification, and the database empties the entry at once when the user
is deactivated, their roles change, their identity is unlinked or SSO is switched off; a cached token is never
accepted past its exp."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, tenant_context

from access import authentication
from access.errors import AuthenticationFailed
from config import tenant_cache
from config.tenant_cache import CHANNEL, cache_listener_ready
from tests.access.conftest import MAPPING_A, _configure
from tests.tenants.test_cache_invalidation import eventually, other_connection


@pytest.fixture(scope="module", autouse=True)
def _listener_stopped_afterwards() -> Iterator[None]:
    yield
    tenant_cache.cache_listener_stop()


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature was checked, in order (a spy around the real verification)."""
    calls: list[str] = []
    real = authentication.token_validate

    def spy(config: Any, token: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return real(config, token, **kwargs)

    monkeypatch.setattr(authentication, "token_validate", spy)
    return calls


@pytest.fixture
def caches_on(settings: Any, committed: None, sso: Any, tenant_a: Any) -> Any:
    settings.ATRIUM_AUTH_CACHE_S = 300  # far longer than the test: what empties an entry here is the database
    settings.ATRIUM_JWT_LEEWAY_S = 0
    # Alpha trusts IdP A again, whatever an earlier test of the session configured (committed, like the session's).
    _configure(tenant_a, sso.a, MAPPING_A, allowed_email_domains="a.example")
    connection.set_schema_to_public()
    assert cache_listener_ready(), "the cache listener did not subscribe"
    return sso.a


def call(tenant: Any, token: str) -> Any:
    request = RequestFactory().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}")
    with tenant_context(tenant):
        user, _info = authentication.authenticate_api_request(request)
    return user


def notifications_handled() -> None:
    """Wait until this process's listener has handled every notification committed so far: PostgreSQL delivers
    them in commit order, so a marker sent now is handled after all of them."""
    marker = f"marker-{uuid.uuid4().hex[:10]}"
    with other_connection() as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, marker))
    eventually(lambda: tenant_cache._listener.generation.get(marker, 0) > 0, "the listener caught up")


def from_memory(tenant: Any, token: str) -> Any:
    """Call until a call costs no query (the set-up's own writes, e.g. the user created on first sight, rightly
    empty what was cached before their notification arrived); returns that call's user. Each call waits for the
    notifications of earlier writes first: under load one can arrive after a call served from memory, and empty
    the entry the test then relies on (what failed: 2 == 1 signature checks)."""
    users: list[Any] = []

    def check() -> bool:
        notifications_handled()
        with CaptureQueriesContext(connection) as queries:
            users.append(call(tenant, token))
        return len(queries) == 0

    eventually(check, "a bearer call answered from the cache")
    return users[-1]


def mint(idp: Any, **extra: Any) -> str:
    sub = f"cache-{uuid.uuid4().hex[:10]}"
    claims = {"sub": sub, "aud": idp.client_id, "email": f"{sub}@a.example", "email_verified": True,
              "preferred_username": sub, "groups": ["atrium-basic"], **extra}
    return str(idp.mint(claims))


def refused(tenant: Any, token: str, reason: str) -> bool:
    """True once the call is refused; a refusal for another reason fails the test."""
    message = ""
    try:
        call(tenant, token)
    except AuthenticationFailed as exc:
        message = exc.message
    if message and reason not in message:
        raise AssertionError(f"refused for another reason: {message}")
    return bool(message)


def test_a_token_is_verified_once_and_then_served_from_memory(caches_on: Any, tenant_a: Any,
                                                              verified: list[str]) -> None:
    token = mint(caches_on)
    first = call(tenant_a, token)
    cached = from_memory(tenant_a, token)
    assert cached.pk == first.pk and cached is not first  # a fresh user object per call
    assert cached.has_perm("access.use_sonnet") == first.has_perm("access.use_sonnet")
    checks = len(verified)
    for _ in range(5):
        assert call(tenant_a, token).pk == first.pk
    assert len(verified) == checks  # no signature check for a cached token
    assert verified.count(token) <= 2  # once, or twice if the first user creation's notification raced the store


def test_deactivation_role_change_unlink_and_sso_off_apply_at_once(caches_on: Any, tenant_a: Any) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from access.models import OIDCConfig, UserIdentity

    token = mint(caches_on)
    user = from_memory(tenant_a, token)
    assert user.has_perm("access.use_sonnet")

    # A role edited elsewhere (the admin, a script): what the token's role grants changes on the next call. (Its
    # membership itself follows the token's groups claim, synced when a token is first verified.)
    with schema_context(tenant_a.schema_name):
        role = Group.objects.get(name="basic_user")
        sonnet = role.permissions.get(codename="use_sonnet")
        role.permissions.remove(sonnet)
    try:
        eventually(lambda: not call(tenant_a, token).has_perm("access.use_sonnet"), "a role change on a cached token")
    finally:
        with schema_context(tenant_a.schema_name):
            role.permissions.add(sonnet)
    eventually(lambda: call(tenant_a, token).has_perm("access.use_sonnet"), "the role restored")

    with schema_context(tenant_a.schema_name):
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    eventually(lambda: refused(tenant_a, token, "deactivated"), "a deactivated user's cached token refused")
    with schema_context(tenant_a.schema_name):
        get_user_model().objects.filter(pk=user.pk).update(is_active=True)
    from_memory(tenant_a, token)

    with schema_context(tenant_a.schema_name):
        OIDCConfig.objects.filter(pk=1).update(enabled=False)
    try:
        eventually(lambda: refused(tenant_a, token, "SSO is not configured"), "SSO switched off")
    finally:
        with schema_context(tenant_a.schema_name):
            OIDCConfig.objects.filter(pk=1).update(enabled=True)
    from_memory(tenant_a, token)

    with schema_context(tenant_a.schema_name):  # unlinked: the token's subject becomes a new, different user
        UserIdentity.objects.filter(user_id=user.pk).update(subject=f"unlinked-{uuid.uuid4().hex[:8]}")
    eventually(lambda: call(tenant_a, token).pk != user.pk, "an unlinked identity no longer served from memory")


class _Clock:
    """What access.authentication sees as the `time` module: the real one, its time() set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_a_cached_token_is_refused_once_it_expires(caches_on: Any, tenant_a: Any, verified: list[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The cache's own clock is set by the test, not waited for: under load, a token expiring a few real seconds
    # after minting could expire before it was ever cached, and a notification of the set-up's writes arriving
    # late rightly empties the entry, so the refusal then comes from verifying again (what failed: 2 == 1).
    # The IdP checks keep the real clock, an hour before exp: a token verified again is accepted by them.
    exp = int(time.time()) + 3600
    token = mint(caches_on, exp=exp)
    clock = _Clock(exp - 1.0)
    monkeypatch.setattr(authentication, "time", clock)
    from_memory(tenant_a, token)  # served from memory one second before its exp

    clock.now = float(exp)  # leeway 0: refused from its exp on

    def refused_from_memory() -> bool:
        checks = len(verified)
        with CaptureQueriesContext(connection) as queries:
            assert refused(tenant_a, token, "expired"), "a token past its exp was accepted"
        return len(queries) == 0 and len(verified) == checks

    # Every call is refused; one answered with no query and no signature check proves the refusal comes from the
    # cached claims (an entry emptied by a late notification is verified again, refused, and cached again).
    eventually(refused_from_memory, "the cached token refused after its exp, without verifying it again")
