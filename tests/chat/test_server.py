"""Against a real gunicorn (two worker processes): the official Python and TypeScript SDKs, and quotas that hold
exactly across processes under concurrent clients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import pytest

from inference.breaker import breaker_reset
from inference.simulator import Simulator
from tests.chat.conftest import METRICS_TOKEN, QUOTA_TENANT
from tests.conftest import ROOT, WebServer

pytestmark = pytest.mark.slow


@pytest.mark.django_db
def test_quota_tenant_has_its_roles(web: WebServer) -> None:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    with schema_context(QUOTA_TENANT):
        assert {"viewer", "basic_user", "power_user", "admin", "compliance_officer"} <= set(
            Group.objects.values_list("name", flat=True))


def sdk(web: WebServer, key: str, host: str = "alpha.localhost") -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=web.url(host), max_retries=0)


def test_python_sdk_create_and_stream(web: WebServer, clean: None, committed_user: Any) -> None:
    _user, key = committed_user("alpha")
    client = sdk(web, key)
    message = client.messages.create(model="claude-sonnet-5-5", max_tokens=64,
                                     messages=[{"role": "user", "content": "Hello from the SDK"}])
    assert message.type == "message" and message.model == "claude-sonnet-5-5"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens > 0
    with client.messages.stream(model="claude-haiku-5-5", max_tokens=64,
                                messages=[{"role": "user", "content": "Stream it"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens")
    models = [m.id for m in client.models.list()]
    assert "claude-sonnet-5-5" in models and "claude-opus-5-5" not in models


def test_a_revoked_key_is_refused_by_every_worker(web: WebServer, clean: None, committed_user: Any) -> None:
    """Both workers cache the key (config/tenant_cache.py); the revocation, committed here, empties both."""
    from django_tenants.utils import schema_context

    from access.models import ApiKey
    from access.services import api_key_revoke
    from tests.tenants.test_cache_invalidation import eventually

    user, key = committed_user("alpha")
    client = sdk(web, key)
    for _ in range(8):  # keep-alive off per call below, so both workers see the key
        assert client.with_options(default_headers={"Connection": "close"}).models.list().data
    with schema_context("alpha"):
        api_key_revoke(api_key=ApiKey.objects.get(user=user), revoked_by=user)

    def refused_everywhere() -> bool:
        outcomes = []
        for _ in range(8):
            try:
                client.with_options(default_headers={"Connection": "close"}).models.list()
                outcomes.append(False)
            except anthropic.AuthenticationError as exc:
                outcomes.append("revoked" in str(exc))
        return all(outcomes)

    eventually(refused_everywhere, "every worker refuses the revoked key")


def test_a_200_means_the_calls_records_are_committed(simulator: Simulator, clean: None,
                                                     committed_user: Any) -> None:
    """Group commit: the response completes only once its audit entry and usage are committed, each under the
    request id the client sees; a graceful stop (SIGTERM) then has nothing left to lose."""
    from django_tenants.utils import schema_context

    from audit.models import AuditEntry
    from inference.models import UsageDaily, UsageRecord
    from tests.chat.conftest import web_env

    server = WebServer(web_env(simulator), workers=1).start()
    try:
        user, key = committed_user("alpha")
        client = sdk(server, key)
        for n in range(5):
            raw = client.messages.with_raw_response.create(model="claude-haiku-5-5", max_tokens=16,
                                                           messages=[{"role": "user", "content": f"call {n}"}])
            request_id = raw.headers["request-id"]
            with schema_context("alpha"):  # no waiting: committed before the response ended
                assert AuditEntry.objects.filter(request_id=request_id, event_type="model_call").count() == 1
                assert UsageRecord.objects.filter(request_id=request_id, user_id=user.pk).count() == 1
    finally:
        server.stop()  # SIGTERM, then wait for the process to exit
    assert server.proc is not None and server.proc.returncode == 0
    with schema_context("alpha"):
        assert UsageDaily.objects.get(user_id=user.pk, model="claude-haiku-5-5").requests == 5
        assert AuditEntry.objects.filter(event_type="model_call", user_id=user.pk).count() == 5


def test_python_sdk_raises_the_right_exception_classes(web: WebServer, simulator: Simulator, clean: None,
                                                       committed_user: Any) -> None:
    _user, key = committed_user("alpha")
    client = sdk(web, key)
    ask: dict[str, Any] = {"max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.AuthenticationError):
        sdk(web, "atr_00000000_forged").messages.create(model="claude-sonnet-5-5", **ask)
    with pytest.raises(anthropic.PermissionDeniedError, match="use_opus"):
        client.messages.create(model="claude-opus-5-5", **ask)
    with pytest.raises(anthropic.NotFoundError, match="claude-unknown"):
        client.messages.create(model="claude-unknown", **ask)
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.create(model="claude-sonnet-5-5", max_tokens=0, messages=ask["messages"])
    simulator.faults.set("anthropic", status=503)
    simulator.faults.set("bedrock", "*", status=503)
    simulator.faults.set("vertex", "*", status=529)
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model="claude-sonnet-5-5", **ask)
    # A stream that breaks after it started raises the SDK's stream error instead of truncating silently.
    simulator.faults.clear()
    breaker_reset()
    simulator.faults.set("anthropic", error_after_events=4)
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(
            model="claude-sonnet-5-5", **ask) as stream:
        "".join(stream.text_stream)


def test_python_sdk_rate_limit_error_with_retry_after(web: WebServer, clean: None, committed_user: Any,
                                                      quota_policy: Any) -> None:
    quota_policy(requests_per_minute=None, user_requests_per_minute=1)
    _user, key = committed_user(QUOTA_TENANT)
    client = sdk(web, key, f"{QUOTA_TENANT}.localhost")
    client.messages.create(model="claude-haiku-5-5", max_tokens=16, messages=[{"role": "user", "content": "one"}])
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="claude-haiku-5-5", max_tokens=16, messages=[{"role": "user", "content": "2"}])
    assert int(info.value.response.headers["retry-after"]) >= 1


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_typescript_sdk(web: WebServer, clean: None, committed_user: Any) -> None:
    _user, key = committed_user("alpha")
    ask = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    cases = [
        {"name": "auth", "expect": "AuthenticationError", "key": "atr_00000000_forged",
         "body": {"model": "claude-sonnet-5-5", **ask}},
        {"name": "permission", "expect": "PermissionDeniedError", "body": {"model": "claude-opus-5-5", **ask}},
        {"name": "not_found", "expect": "NotFoundError", "body": {"model": "claude-unknown", **ask}},
        {"name": "bad_request", "expect": "BadRequestError",
         "body": {"model": "claude-sonnet-5-5", "max_tokens": 0, "messages": ask["messages"]}},
    ]
    env = dict(os.environ, ATRIUM_BASE_URL=web.url("alpha.localhost"), ATRIUM_API_KEY=key,
               ATRIUM_CASES=json.dumps(cases))
    done = subprocess.run(["node", "sdk_check.mjs"], cwd=ROOT / "tests" / "node" / "sdk", env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["create"]["type"] == "message" and out["create"]["model"] == "claude-sonnet-5-5"
    assert out["create"]["text"] and out["create"]["usage"]["output_tokens"] > 0
    assert out["stream"]["text"] and out["stream"]["text"] == out["stream"]["final_text"]
    for case in cases:
        result = out["errors"][case["name"]]
        assert result["raised"] == case["expect"] and result["instance"] is True, (case["name"], result)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_typescript_sdk_rate_limit_and_overloaded(web: WebServer, simulator: Simulator, clean: None,
                                                  committed_user: Any, quota_policy: Any) -> None:
    quota_policy(requests_per_minute=None, user_requests_per_minute=1)
    _user, limited_key = committed_user(QUOTA_TENANT)
    _user, key = committed_user("alpha")
    ask = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    quota_url = web.url(f"{QUOTA_TENANT}.localhost")
    cases = [
        # Every provider fails below, so this first call is admitted (counted) and then overloaded...
        {"name": "first", "expect": "OverloadedError", "key": limited_key, "base_url": quota_url,
         "body": {"model": "claude-haiku-5-5", **ask}},
        # ...and the second is over the per-user rate before any provider is tried.
        {"name": "rate_limit", "expect": "RateLimitError", "key": limited_key, "base_url": quota_url,
         "body": {"model": "claude-haiku-5-5", **ask}},
        {"name": "overloaded", "expect": "OverloadedError", "body": {"model": "claude-sonnet-5-5", **ask}},
    ]
    simulator.faults.set("anthropic", status=503)
    simulator.faults.set("bedrock", "*", status=503)
    simulator.faults.set("vertex", "*", status=529)
    env = dict(os.environ, ATRIUM_BASE_URL=web.url("alpha.localhost"), ATRIUM_API_KEY=key,
               ATRIUM_CASES=json.dumps(cases), ATRIUM_ONLY_CASES="1")
    done = subprocess.run(["node", "sdk_check.mjs"], cwd=ROOT / "tests" / "node" / "sdk", env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout.strip().splitlines()[-1])["errors"]
    for case in cases:
        result = errors[case["name"]]
        assert result["raised"] == case["expect"] and result["instance"] is True, (case["name"], result)
    assert errors["rate_limit"]["status"] == 429 and errors["overloaded"]["status"] == 529


def _api_successes(web: WebServer) -> float:
    text = httpx.get(web.url("localhost") + "/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    line = next((line for line in text.splitlines() if line.startswith("atrium_model_requests_total{")
                 and 'source="api"' in line and 'status="success"' in line and 'tenant="alpha"' in line), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_metrics_sum_every_worker(web: WebServer, clean: None, committed_user: Any) -> None:
    _user, key = committed_user("alpha")
    before = _api_successes(web)
    time.sleep(0.5)  # let calls of earlier tests finish being counted (the recorder runs after each response)
    while (now := _api_successes(web)) != before:
        before = now
        time.sleep(0.5)
    url = web.url("alpha.localhost") + "/v1/messages"
    payload = {"model": "claude-haiku-5-5", "max_tokens": 16, "messages": [{"role": "user", "content": "m"}]}
    for _ in range(8):  # a new connection each time: both gunicorn workers serve some
        assert httpx.post(url, json=payload, headers={"x-api-key": key}, timeout=30).status_code == 200
    deadline = time.monotonic() + 30  # counted by the background recorder just after each response
    while _api_successes(web) - before < 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _api_successes(web) - before == 8


def _hammer(web: WebServer, key: str, count: int, max_tokens: int) -> list[httpx.Response]:
    url = web.url(f"{QUOTA_TENANT}.localhost") + "/v1/messages"
    payload = {"model": "claude-haiku-5-5", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "q"}]}

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(url, json=payload, headers={"x-api-key": key})

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_requests_per_minute_is_exact_across_processes(web: WebServer, clean: None, committed_user: Any,
                                                       quota_policy: Any) -> None:
    quota_policy(requests_per_minute=15, tokens_per_day=None, user_requests_per_minute=None,
                 user_tokens_per_day=None)
    _user, key = committed_user(QUOTA_TENANT, "power_user")
    responses = _hammer(web, key, 40, 16)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 15, statuses
    assert statuses.count(429) == 25, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error" and int(refused.headers["retry-after"]) >= 1


def test_tokens_per_day_never_exceeded_and_settled_exactly(web: WebServer, clean: None, committed_user: Any,
                                                           quota_policy: Any) -> None:
    from django_tenants.utils import schema_context

    from access.quotas import quota_tokens_used_today
    from inference.models import UsageDaily
    from tenants.models import Tenant

    quota_policy(requests_per_minute=None, tokens_per_day=1500, user_requests_per_minute=None,
                 user_tokens_per_day=None)
    user, key = committed_user(QUOTA_TENANT, "power_user")
    responses = _hammer(web, key, 30, 200)
    ok = [r.json() for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert ok and refused
    used = sum(m["usage"]["input_tokens"] + m["usage"]["output_tokens"] for m in ok)
    assert used <= 1500
    tenant = Tenant.objects.get(schema_name=QUOTA_TENANT)

    def recorded() -> tuple[int, int, int]:
        with schema_context(QUOTA_TENANT):
            rows = list(UsageDaily.objects.filter(user_id=user.pk))
        return (quota_tokens_used_today(tenant=tenant), sum(r.requests for r in rows),
                sum(r.input_tokens + r.output_tokens for r in rows))

    # Usage and the quota settlement are written just after each response has gone out: wait for the last.
    deadline = time.monotonic() + 30
    while recorded() != (used, len(ok), used) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorded() == (used, len(ok), used)


def test_a_fresh_quota_day_counts_the_calls_recorded_before_it_as_settled(web: WebServer, clean: None,
                                                                            committed_user: Any,
                                                                            quota_policy: Any) -> None:
    """The tests' fresh day (quota_keys_clear) must not hand the calls recorded before it back to the counters.
    The web server's settlement recovery (inference.settle_recovery: at each worker's start and again 30 s later)
    adds every call of the last 15 minutes missing from the day's settled set, once; a clear that forgot which
    calls were settled let a later pass count an earlier test's call in a later test (the tokens-per-day test once
    read 1389 = its own 7 x 195 + the 24 of test_python_sdk_rate_limit_error_with_retry_after's call)."""
    from datetime import UTC, datetime, timedelta

    from django.conf import settings

    from access.quotas import quota_tokens_used_today
    from inference.settle_recovery import settle_recover
    from tenants.models import Tenant
    from tests.chat.conftest import quota_keys_clear

    quota_policy(requests_per_minute=None, tokens_per_day=1500, user_requests_per_minute=None,
                 user_tokens_per_day=None)
    _user, key = committed_user(QUOTA_TENANT, "power_user")
    (response,) = _hammer(web, key, 1, 16)
    assert response.status_code == 200
    usage = response.json()["usage"]
    tenant = Tenant.objects.get(schema_name=QUOTA_TENANT)
    deadline = time.monotonic() + 30  # settled just after the response
    while quota_tokens_used_today(tenant=tenant) != usage["input_tokens"] + usage["output_tokens"] \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    quota_keys_clear()
    # The recovery's pass as a worker would run it once the call is older than the grace period.
    later = datetime.now(UTC) + timedelta(seconds=float(settings.ATRIUM_SETTLE_RECOVERY_GRACE_S) + 1)
    assert settle_recover([tenant], now=later) == {}
    assert quota_tokens_used_today(tenant=tenant) == 0
