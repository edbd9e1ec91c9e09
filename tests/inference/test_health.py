"""Provider health checks: one-token probes feed the breaker, the history and the admin status page."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from inference import breaker
from inference.catalog.models import ProviderHealthCheck
from inference.health import provider_health_check_all
from inference.simulator import Simulator
from tests.inference.routing import CREDENTIALS

ORDER = ["anthropic", "bedrock:us-east-1", "vertex:us-east5"]


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.ATRIUM_PROVIDER_ORDER = ORDER
    monkeypatch.setenv("ANTHROPIC_API_KEY", CREDENTIALS["anthropic"]["api_key"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["bedrock"]["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["bedrock"]["secret_key"])
    settings.ATRIUM_VERTEX_ACCESS_TOKEN = "ya29.health"
    settings.ATRIUM_VERTEX_PROJECT_ID = "atrium-health"


def test_health_check_uses_the_cheapest_model_and_one_token(sim: Simulator, env_credentials: None) -> None:
    results = {r.target: r for r in provider_health_check_all()}
    assert {t: r.status for t, r in results.items() if r.credentials_source == "environment"} == {
        "anthropic": "up", "bedrock:us-east-1": "up", "vertex:us-east5": "up"}
    assert results["anthropic"].model_id == "claude-haiku-5-5"
    assert results["bedrock:us-east-1"].model_id == "global.anthropic.claude-haiku-5-5-v1:0"
    sent = sim.requests(provider="anthropic")
    assert sent and all(r["model"] == "claude-haiku-5-5" for r in sent)
    assert ProviderHealthCheck.objects.filter(status="up").count() >= 3


def test_failed_check_opens_the_breaker_and_passing_one_closes_it(sim: Simulator, env_credentials: None) -> None:
    sim.faults.set("bedrock", "us-east-1", status=503)
    results = {r.target: r for r in provider_health_check_all()}
    assert results["bedrock:us-east-1"].status == "down" and results["bedrock:us-east-1"].http_status == 503
    assert breaker.breaker_state("bedrock:us-east-1").state == "open"
    assert breaker.breaker_state("anthropic").state == "closed"
    sim.faults.clear()
    provider_health_check_all()
    assert breaker.breaker_state("bedrock:us-east-1").state == "closed"


def test_missing_credentials_are_reported_misconfigured(sim: Simulator, settings: Any) -> None:
    settings.ATRIUM_PROVIDER_ORDER = ORDER  # no credentials anywhere (the test environment has none)
    results = {r.target: r for r in provider_health_check_all()}
    assert {r.status for r in results.values()} == {"misconfigured"}
    assert "no API key" in results["anthropic"].detail
    assert breaker.breaker_state("anthropic").failures == 0
    assert sim.requests() == []


def test_provider_health_command_prints_a_table(sim: Simulator, env_credentials: None) -> None:
    sim.faults.set("vertex", "us-east5", status=500)
    out = StringIO()
    call_command("provider_health", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["TARGET", "CREDENTIALS", "STATUS"]
    rows = {line.split()[0]: line.split()[2] for line in lines[1:]}
    assert rows == {"anthropic": "up", "bedrock:us-east-1": "up", "vertex:us-east5": "down"}


def test_provider_health_command_fails_when_everything_is_down(sim: Simulator, env_credentials: None) -> None:
    for provider in ("anthropic", "bedrock", "vertex"):
        sim.faults.set(provider, "" if provider == "anthropic" else "*", status=503)
    with pytest.raises(CommandError, match="every provider target failed"):
        call_command("provider_health", stdout=StringIO())


def test_status_page_shows_breaker_and_history(sim: Simulator, env_credentials: None, public_client: Client) -> None:
    from django.contrib.auth import get_user_model

    sim.faults.set("anthropic", "", status=529)
    provider_health_check_all()
    root = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    public_client.force_login(root)
    page = public_client.get("/admin/catalog/providerhealthcheck/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="provider-status"' in html
    row = html[html.index("<strong>anthropic</strong>"):]
    row = row[:row.index("</tr>")]
    assert "down" in row and "open" in row
    # The reset button closes the breaker.
    # The reset asks for confirmation first (a GET, or a POST without it, changes nothing).
    ask = public_client.get("/admin/catalog/providerhealthcheck/reset/anthropic/")
    assert ask.status_code == 200 and 'id="confirm-reset"' in ask.content.decode()
    assert public_client.post("/admin/catalog/providerhealthcheck/reset/anthropic/").status_code == 200
    assert breaker.breaker_state("anthropic").state == "open"
    reset = public_client.post("/admin/catalog/providerhealthcheck/reset/anthropic/", {"confirm": "yes"})
    assert reset.status_code == 302
    assert breaker.breaker_state("anthropic").state == "closed"


def test_beat_schedules_the_health_task(settings: Any) -> None:
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["provider-health"]
    assert entry["task"] in app.tasks or _registered(entry["task"])
    assert entry["schedule"] == float(settings.ATRIUM_HEALTH_CHECK_INTERVAL_S)


def _registered(name: str) -> bool:
    from config.celery import app

    app.loader.import_default_modules()
    return name in app.tasks
