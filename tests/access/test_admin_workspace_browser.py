"""The tenant admin workspace and the platform operator's screens in Chromium (issue 17, items 4 and 6).

Against the real gunicorn of tests/access (its mail goes to a file outbox) and the test IdPs: the workspace carries
the tenant's name and colours and no platform objects; members are listed with their roles; roles read as sentences;
an invitation is accepted end to end from the mailed link, while an expired, revoked or replaced link is refused; the
SSO form shows the callback URL, refuses to enable SSO before a successful test sign-in, and a real test sign-in
against IdP B then allows it; the platform's health page is coloured and fits 1280 px, and a breaker reset asks for
confirmation. Every page must load without a console error (a CSP violation by an inline script or style is one).
Screenshots for docs/tenants.md and docs/sso.md go to docs/images/ with ATRIUM_SCREENSHOTS=1 (else a temp dir).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.access.admin_browser import (
    People,
    admin_login,
    admin_page,
    invitation_link,
    wait_mail,
)
from tests.access.conftest import IdpServers
from tests.chat.browser import no_sideways_panning

pytestmark = [pytest.mark.e2e]  # no test transaction: the server must see what the tests commit


def test_tenant_workspace_has_the_tenants_look_an_overview_and_no_platform_objects(
        browser: Any, web_server: str, sso: IdpServers, tenants: dict[str, Any], people: People,
        django_db_blocker: Any, shots: Path) -> None:
    from tenants.models import Tenant

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    with django_db_blocker.unblock():
        before = Tenant.objects.filter(schema_name="alpha").values("brand_colour", "accent_colour").get()
        Tenant.objects.filter(schema_name="alpha").update(brand_colour="#5b2a86", accent_colour="#00796b")
    try:
        page = admin_page(browser)
        page.goto(f"{base}/admin/login/")
        assert "Django" not in page.content()
        assert page.locator("#atrium-site-header").inner_text() == tenants["alpha"].name
        admin_login(page, base, admin.username)
        header = page.locator("#header")
        assert page.locator("#atrium-site-header").inner_text() == tenants["alpha"].name
        assert "Django administration" not in page.content() and "Site administration" not in page.content()
        # The tenant's colours, from its stylesheet (no inline style): header and buttons.
        assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(91, 42, 134)"
        assert page.locator("#overview-invite").evaluate("e => getComputedStyle(e).backgroundColor") == \
            "rgb(0, 121, 107)"
        for card in ("#card-members", "#card-sso", "#card-policy", "#card-roles"):
            assert page.locator(card).is_visible()
        policy = page.locator("#card-policy").inner_text()
        assert "Longest answer" in policy and "the platform" in policy
        roles = page.locator("#card-roles").inner_text()
        assert "power_user" in roles and "chats with Haiku, Sonnet, Opus" in roles
        # The app list uses the product's words and shows no Celery or platform object.
        text = page.locator("#content-main").text_content() or ""
        assert "People and roles" in text and "Members" in text and "Invitations" in text
        for hidden in ("Periodic tasks", "Crontabs", "Intervals", "Solar events", "Clocked", "Tenants", "Domains",
                       "Catalog models", "Provider health", "Usage per tenant"):
            assert hidden not in text, hidden
        # "View site" leads to the chat, which exists here.
        assert page.locator("#user-tools a:has-text('View site')").get_attribute("href") == "/chat/"
        no_sideways_panning(page)
        page.screenshot(path=str(shots / "tenant-admin-overview.png"), full_page=True)
        for path in ("/admin/django_celery_beat/periodictask/", "/admin/django_celery_beat/crontabschedule/",
                     "/admin/tenants/tenant/", "/admin/catalog/providerhealthcheck/", "/admin/catalog/tenantusage/"):
            assert page.goto(f"{base}{path}").status == 404, path
        # The policy page: the platform's values read-only, the tenant's own (stricter) ones editable.
        page.goto(f"{base}/admin/access/tenantpolicy/")
        assert page.locator("#id_own_max_tokens_per_request").is_editable()
        assert page.locator("#id_max_tokens_per_request").count() == 0
        assert page.locator("fieldset:has-text('Set by the platform (read-only)') .readonly").count() >= 5
        assert not page.errors, page.errors
    finally:
        with django_db_blocker.unblock():
            Tenant.objects.filter(schema_name="alpha").update(**before)


def test_members_listed_with_roles_and_roles_described_in_plain_words(
        browser: Any, web_server: str, sso: IdpServers, people: People, django_db_blocker: Any,
        shots: Path) -> None:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    member = people.make("alpha", "basic_user")
    page = admin_page(browser)
    admin_login(page, base, admin.username)
    page.goto(f"{base}/admin/auth/user/?q={member.username}")
    row = page.locator(f"#result_list tr:has-text('{member.username}')")
    assert "basic_user" in row.inner_text() and "password" in row.inner_text()
    headers = page.locator("#result_list thead").inner_text().lower()
    assert "roles" in headers and "signs in with" in headers
    assert page.locator("#changelist-filter").inner_text().lower().count("role") >= 1
    page.goto(f"{base}/admin/auth/user/?groups__id__exact="
              f"{_group_pk('alpha', 'basic_user', django_db_blocker)}")
    assert member.username in page.locator("#result_list").inner_text()
    assert admin.username not in page.locator("#result_list").inner_text()
    page.goto(f"{base}/admin/auth/user/")
    no_sideways_panning(page)
    page.screenshot(path=str(shots / "tenant-admin-members.png"))
    # "Add user" is an invitation: nobody types someone else's password.
    page.goto(f"{base}/admin/auth/user/add/")
    assert page.url == f"{base}/admin/access/invitation/add/"

    with django_db_blocker.unblock(), schema_context("alpha"):
        role, _ = Group.objects.get_or_create(name=f"reviewers-{uuid.uuid4().hex[:4]}")
    try:
        page.goto(f"{base}/admin/auth/group/{role.pk}/change/")
        form = page.locator("#group_form").inner_text()
        assert "Using Claude" in form and "People and roles" in form and "Compliance and records" in form
        assert "Use the most capable Opus models" in form and "Invite new members" in form
        assert "access.use_opus" not in form and "Can add" not in form and "use_opus" not in form
        page.check("label:has-text('Send messages to Claude (chat and API)') input")
        page.check("label:has-text('Use the balanced Sonnet models') input")
        page.screenshot(path=str(shots / "tenant-admin-role.png"), full_page=True)
        page.click("input[name=_save]")
        page.wait_for_url(f"{base}/admin/auth/group/")
        assert "chats with Sonnet" in page.locator(f"#result_list tr:has-text('{role.name}')").inner_text()
        with django_db_blocker.unblock(), schema_context("alpha"):
            assert sorted(role.permissions.values_list("codename", flat=True)) == ["use_sonnet", "write"]
        assert not page.errors, page.errors
    finally:
        with django_db_blocker.unblock(), schema_context("alpha"):
            role.delete()


def _group_pk(schema: str, name: str, blocker: Any) -> int:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    with blocker.unblock(), schema_context(schema):
        return int(Group.objects.get(name=name).pk)


def test_invitation_accepted_end_to_end_and_a_replaced_link_refused(
        browser: Any, web_server: str, sso: IdpServers, people: People, django_db_blocker: Any,
        shots: Path) -> None:
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    from access.models import Invitation

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    email = f"newcomer-{uuid.uuid4().hex[:6]}@a.example"
    started = time.time()
    page = admin_page(browser)
    admin_login(page, base, admin.username)
    page.goto(f"{base}/admin/auth/user/")
    page.click("#invite-people")
    page.wait_for_url(f"{base}/admin/access/invitation/add/")
    assert page.locator("#id_password1").count() == 0
    page.fill("#id_email", email)
    page.check("label:has-text('basic_user') input")
    page.screenshot(path=str(shots / "tenant-admin-invite.png"), full_page=True)
    page.click("input[name=_save]")
    page.wait_for_url(f"{base}/admin/access/invitation/")
    assert f"Invitation sent to {email}" in page.locator(".messagelist").inner_text()
    row = page.locator(f"#result_list tr:has-text('{email}')")
    assert "Waiting for the invitee" in row.inner_text() and "basic_user" in row.inner_text()
    first_link = invitation_link(wait_mail(email, started, 1)[-1])

    # Re-send: a new link; the first one stops working.
    row.locator("th a, td a").first.click()
    page.click("#resend-invitation")
    assert "sent again" in page.locator(".messagelist").inner_text()
    second_link = invitation_link(wait_mail(email, started, 2)[-1])
    assert second_link != first_link

    invitee = admin_page(browser)
    refused = invitee.goto(first_link)
    assert refused.status == 404 and invitee.locator("#invitation-error").get_attribute("data-reason") == "unknown"
    invitee.goto(second_link)
    assert invitee.locator("#invitee").inner_text() == email
    invitee.fill("#id_password1", "short")
    invitee.fill("#id_password2", "short")
    invitee.click("#set-password")
    invitee.locator("span.error").first.wait_for()  # Django's password validators
    assert "too short" in invitee.locator("#invitation").inner_text()
    invitee.screenshot(path=str(shots / "invitation-accept.png"), full_page=True)
    invitee.fill("#id_password1", "A-fine-Password-42")
    invitee.fill("#id_password2", "A-fine-Password-42")
    invitee.click("#set-password")
    invitee.wait_for_url(re.compile(r".*/accounts/login/\?next=/chat/$"))
    assert "Your password is set" in invitee.content()
    invitee.fill("#id_username", email)
    invitee.fill("#id_password", "A-fine-Password-42")
    invitee.click("button[type=submit]")
    invitee.wait_for_url(re.compile(rf"{re.escape(base)}/(chat|consent)/.*"))
    # The link works once.
    spent = invitee.goto(second_link)
    assert spent.status == 410 and invitee.locator("#invitation-error").get_attribute("data-reason") == "accepted"
    with django_db_blocker.unblock(), schema_context("alpha"):
        user = get_user_model().objects.get(username=email)
        people.made.append(("alpha", int(user.pk)))
        assert sorted(user.groups.values_list("name", flat=True)) == ["basic_user"] and not user.is_staff
        invitation = Invitation.objects.get(email=email)
        assert invitation.accepted_user_id == user.pk and invitation.status == "accepted"
        Invitation.objects.filter(pk=invitation.pk).delete()
    assert not page.errors and not invitee.errors, page.errors + invitee.errors


def test_expired_and_revoked_invitations_are_refused(browser: Any, web_server: str, sso: IdpServers,
                                                     people: People, django_db_blocker: Any) -> None:
    from datetime import timedelta

    from django.contrib.auth.models import Group
    from django.utils import timezone
    from django_tenants.utils import schema_context

    from access.invitations import invitation_create
    from access.models import Invitation

    base = f"http://alpha.localhost:{web_server}"
    admin = people.make("alpha", "admin", staff=True)
    started = time.time()
    late, withdrawn = (f"{w}-{uuid.uuid4().hex[:6]}@a.example" for w in ("late", "withdrawn"))
    with django_db_blocker.unblock(), schema_context("alpha"):
        viewer = Group.objects.get(name="viewer")
        for email in (late, withdrawn):
            invitation_create(email=email, roles=[viewer], staff=False, invited_by=admin, base_url=base)
        Invitation.objects.filter(email=late).update(expires_at=timezone.now() - timedelta(minutes=1))
        withdrawn_pk = Invitation.objects.get(email=withdrawn).pk
    from django.core import mail

    links = {m.to[0]: invitation_link(m.body) for m in mail.outbox if m.to[0] in (late, withdrawn)}
    assert set(links) == {late, withdrawn}, started

    page = admin_page(browser)
    admin_login(page, base, admin.username)
    page.goto(f"{base}/admin/access/invitation/?status=expired")
    assert late in page.locator("#result_list").inner_text()
    page.goto(f"{base}/admin/access/invitation/{withdrawn_pk}/change/")
    page.click("#revoke-invitation")
    assert "revoked" in page.locator(".messagelist").inner_text()

    invitee = admin_page(browser)
    expired = invitee.goto(links[late])
    assert expired.status == 410
    assert invitee.locator("#invitation-error").get_attribute("data-reason") == "expired"
    assert "expired" in invitee.locator("#invitation-error").inner_text()
    assert invitee.locator("#id_password1").count() == 0
    revoked = invitee.goto(links[withdrawn])
    assert revoked.status == 410
    assert invitee.locator("#invitation-error").get_attribute("data-reason") == "revoked"
    # A hand-made POST to an expired link creates nothing either.
    with django_db_blocker.unblock(), schema_context("alpha"):
        from django.contrib.auth import get_user_model

        assert not get_user_model().objects.filter(username__in=[late, withdrawn]).exists()
        Invitation.objects.filter(email__in=[late, withdrawn]).delete()
    assert not page.errors and not invitee.errors, page.errors + invitee.errors
