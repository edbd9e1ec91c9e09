"""Cost screens in Chromium: the tenant admin's usage dashboard (chart, legend, date range, stacking, CSV), the
platform's usage per tenant, a budget's hard stop and its alert e-mail in the chat, and the chat's spend panel.

The server runs in this process (a threaded WSGI server on the committed test database), so the alert e-mail is
caught by Django's locmem backend (`mailoutbox`) exactly as the application sends it."""

from __future__ import annotations

import csv
import io
import os
import re
import socketserver
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from tests.chat.browser import BROWSER_MARKS, PASSWORD, no_sideways_panning
from tests.chat.conftest import providers_to_simulator, quota_keys_clear
from tests.conftest import free_port, hosts_resolve

pytestmark = BROWSER_MARKS

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
HAIKU = "claude-haiku-5-5"
WIDE = {"width": 1280, "height": 900}


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def live(simulator: Any, tenants: dict[str, Any]) -> Iterator[str]:
    """Atrium served by this process on a free port; returns the port."""
    from django.core.handlers.wsgi import WSGIHandler

    hosts_resolve("alpha.localhost")
    port = free_port()
    server = make_server("127.0.0.1", port, WSGIHandler(), server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(port)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def providers(simulator: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The providers pointed at the simulator (as the `sim` fixture, without a test transaction: the server
    threads must see what the test commits)."""
    from inference.breaker import breaker_reset
    from inference.catalog.pricing import prices_invalidate
    from inference.providers.base import provider_clients_clear

    providers_to_simulator(simulator, settings, monkeypatch)
    breaker_reset()
    provider_clients_clear()
    quota_keys_clear()
    prices_invalidate()
    _budget_keys_clear()
    yield simulator
    breaker_reset()
    quota_keys_clear()
    _budget_keys_clear()


def _budget_keys_clear() -> None:
    from config.redis import redis_client

    client = redis_client()
    for key in client.scan_iter("atrium:budget:*"):
        client.delete(key)


@pytest.fixture
def people(committed: None) -> Iterator[dict[str, Any]]:
    """A committed spender (basic_user) and a tenant administrator (staff, admin role) of alpha, with e-mail."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    from audit.services import consent_give, notice_current
    from tenants.models import Tenant

    made = {}
    with schema_context("alpha"):
        notice = notice_current(Tenant.objects.get(schema_name="alpha"))
        for name, role, staff in (("spender", "basic_user", False), ("boss", "admin", True)):
            username = f"{name}-{uuid.uuid4().hex[:6]}"
            user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com",
                                                        password=PASSWORD, is_staff=staff)
            user.groups.add(Group.objects.get(name=role))
            if notice is not None:
                consent_give(user, notice)
            made[name] = user
    yield made
    with schema_context("alpha"):
        from access.models import Budget

        Budget.objects.filter(user__in=list(made.values())).delete()
        get_user_model().objects.filter(pk__in=[u.pk for u in made.values()]).delete()


def _url(port: str, path: str) -> str:
    return f"http://alpha.localhost:{port}{path}"


def _page(browser: Any, **options: Any) -> Any:
    context = browser.new_context(viewport=WIDE, accept_downloads=True, **options)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
    return page


def _sign_in(page: Any, port: str, username: str, next_path: str) -> None:
    page.goto(_url(port, f"/accounts/login/?next={next_path}"))
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path.split("?")[0]) + ".*"))


def _admin_clean(page: Any) -> None:
    """No error on an admin page but one we do not own: django-tenants' app list in the admin's navigation sidebar
    carries inline styles that the CSP blocks (reported to the tenant-admin work; it is on every admin page). Our
    own content has no inline style or script at all."""
    foreign = "Applying inline style violates the following Content Security Policy directive 'style-src 'self''"
    assert all(foreign in e for e in page.errors), page.errors
    html = page.request.get(page.url).text()
    ours = html[html.index('id="content-main"'):]
    assert not re.search(r"<style|\sstyle=|<script(?![^>]*\ssrc=)", ours), "inline style or script in our content"


def _shots() -> Path | None:
    return DOCS_IMAGES if os.environ.get("ATRIUM_SCREENSHOTS") == "1" else None


def _send(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.click("#send")
    page.wait_for_function("() => !document.querySelector('.message.streaming')")
    page.locator("#send:not([disabled])").wait_for()


def test_budget_hard_stop_and_alert_email_in_the_chat(live: str, browser: Any, providers: Any,
                                                      people: dict[str, Any], mailoutbox: list[Any]) -> None:
    from django_tenants.utils import schema_context

    from access.models import Budget, BudgetAlert
    from inference.budgeting import max_input_tokens
    from inference.catalog.pricing import max_cost_any_provider
    from inference.chat import DEFAULT_MAX_TOKENS

    spender, boss = people["spender"], people["boss"]
    first = "Hi"
    # What the first question may cost at most (the reservation), plus a little: the first answer fits, and after
    # it what is left cannot cover the second question's reservation.
    from inference.calls import with_notice
    from tenants.models import Tenant

    request: dict[str, Any] = {"messages": [{"role": "user", "content": [{"type": "text", "text": first}]}]}
    notice = with_notice(None, Tenant.objects.get(schema_name="alpha").processing_notice or "")
    if notice is not None:
        request["system"] = notice
    need = max_cost_any_provider(HAIKU, datetime.now(UTC), max_output_tokens=DEFAULT_MAX_TOKENS,
                                 input_tokens=max_input_tokens(request))
    with schema_context("alpha"):
        budget = Budget.objects.create(scope=Budget.Scope.USER, user=spender, period=Budget.Period.DAILY,
                                       limit_micros=need + 40)
    page = _page(browser)
    _sign_in(page, live, spender.username, "/chat/")
    page.select_option("#model", HAIKU)
    _send(page, first)
    page.locator(".message.assistant .msg-actions").first.wait_for()
    page.locator("#spend .budget-limit").first.wait_for()
    assert "$0.0" in page.locator("#spend-today").inner_text()
    _send(page, "And again, a longer question this time")
    alert = page.get_by_text(re.compile("Budget reached: the budget of user"))
    alert.first.wait_for()
    text = alert.first.inner_text()
    assert "per UTC day" in text and "It resets at" in text and "00:00 UTC" in text
    shots = _shots()
    if shots is not None:
        page.locator("#spend").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "budget-hard-stop.png"))
    # The refused call's 429 is the only error the browser logs.
    assert all("status of 429" in e for e in page.errors), page.errors

    # The alert: one e-mail to the administrator and the spender, and the notice in the tenant admin.
    assert len(mailoutbox) == 1, [m.subject for m in mailoutbox]
    mail = mailoutbox[0]
    assert "is used up" in mail.subject and {spender.email, boss.email} <= set(mail.to)
    with schema_context("alpha"):
        assert BudgetAlert.objects.filter(budget=budget, threshold=100).count() == 1
    admin = _page(browser)
    _sign_in(admin, live, boss.username, "/admin/access/budgetalert/")
    row = admin.locator("#result_list tbody tr", has_text=spender.username)
    row.wait_for()
    assert "100%" in row.inner_text() and spender.email in row.inner_text()
    _admin_clean(admin)


def test_usage_dashboard_range_stack_and_csv(live: str, browser: Any, providers: Any, people: dict[str, Any],
                                             tmp_path: Path) -> None:
    from django_tenants.utils import schema_context

    from access.services import api_key_create

    spender, boss = people["spender"], people["boss"]
    import httpx

    with schema_context("alpha"):
        _row, key = api_key_create(user=spender, name="dashboard test")
    with httpx.Client(timeout=60) as client:
        for model in (HAIKU, "claude-sonnet-5-5", HAIKU):
            response = client.post(_url(live, "/v1/messages"), headers={"x-api-key": key}, json={
                "model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "Chart"}]})
            assert response.status_code == 200, response.text
    page = _page(browser)
    _sign_in(page, live, boss.username, "/admin/inference/usagedaily/")
    chart = page.locator("svg.usage-chart")
    chart.wait_for()
    legend = page.locator(".legend li")
    assert {"claude-haiku-5-5", "claude-sonnet-5-5"} <= {legend.nth(i).get_attribute("data-series")
                                                         for i in range(legend.count())}
    assert chart.locator("text", has_text="cost (USD)").count() == 1  # the y axis says its unit
    assert chart.locator("rect").count() >= 2
    no_sideways_panning(page)
    shots = _shots()
    if shots is not None:
        page.screenshot(path=str(shots / "usage-dashboard.png"), full_page=True)

    # Stack by provider, tokens: the form keeps the range and the choice.
    page.select_option("#stack", "provider")
    page.select_option("#metric", "tokens")
    page.click("#apply-range")
    page.locator(".legend li[data-series=anthropic]").wait_for()
    assert page.locator("svg.usage-chart text", has_text="tokens").count() >= 1

    # A range with no usage: an empty chart, said in words.
    page.fill("#since", "2020-01-01")
    page.fill("#until", "2020-01-31")
    page.click("#apply-range")
    page.get_by_text("No usage in this period.").first.wait_for()
    assert page.locator("svg.usage-chart rect").count() == 0

    # CSV of a table, for the range on the page.
    page.goto(_url(live, "/admin/inference/usagedaily/?days=7"))
    with page.expect_download() as info:
        page.locator("#per-model .csv-link").click()
    download = info.value
    assert re.fullmatch(r"usage-and-cost-model-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    rows = {r["Model"]: r for r in csv.DictReader(io.StringIO(path.read_text()))}
    assert int(rows["claude-haiku-5-5"]["Requests"]) >= 2 and int(rows["claude-haiku-5-5"]["Cost (micro-USD)"]) > 0
    _admin_clean(page)


def test_platform_usage_per_tenant_charts(live: str, browser: Any, providers: Any, committed: None,
                                          tmp_path: Path) -> None:
    from django.contrib.auth import get_user_model

    username = f"operator-{uuid.uuid4().hex[:6]}"
    # A committed platform operator, left behind (a unique name): deleting a public user would reach for tenant
    # tables that the public schema does not have.
    get_user_model().objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    if True:
        page = _page(browser)
        base = f"http://localhost:{live}"
        page.goto(f"{base}/admin/login/?next=/admin/catalog/tenantusage/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.locator("svg.usage-chart").wait_for()
        assert page.locator(".legend li[data-series=Alpha]").count() + page.locator("#tenant-usage tbody tr").count()
        shots = _shots()
        if shots is not None:
            page.screenshot(path=str(shots / "platform-usage.png"), full_page=True)
        with page.expect_download() as info:
            page.locator(".csv-link").first.click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(str(path))
        header = path.read_text().splitlines()[0]
        assert header.startswith("Tenant,Schema,Requests") and "Cost (USD)" in header
        _admin_clean(page)
