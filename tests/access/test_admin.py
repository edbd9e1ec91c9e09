"""The tenant admin's SSO configuration screen: secret write-only and encrypted, singleton, mapping inline."""

from __future__ import annotations

from typing import Any

from tests.access.conftest import IdpServers


def test_sso_configuration_screen(tenant_b: Any, client_b: Any, make_user: Any, in_tenant: Any,
                                  public_client: Any) -> None:
    from django.contrib.auth.models import Group
    from django.db import connection

    from access.models import OIDCConfig

    admin = make_user(tenant_b, role="admin", is_staff=True)
    with in_tenant(tenant_b):
        client_b.force_login(admin)
        OIDCConfig.objects.filter(pk=1).delete()  # this test owns beta's configuration
        power = Group.objects.get(name="power_user")
    index = client_b.get("/admin/").content.decode()
    assert "/admin/access/oidcconfig/" in index
    form = {
        "enabled": "on", "display_name": "Okta", "issuer": "https://idp.example.com/oauth2/default",
        "discovery_url": "", "verify_ssl": "on", "end_session_endpoint": "", "client_id": "client-123",
        "client_secret": "very-secret-value", "scopes": "openid email profile", "groups_claim": "groups",
        "allowed_email_domains": "example.com\nexample.org", "api_audiences": "api://atrium",
        "group_mappings-TOTAL_FORMS": "1", "group_mappings-INITIAL_FORMS": "0",
        "group_mappings-MIN_NUM_FORMS": "0", "group_mappings-MAX_NUM_FORMS": "1000",
        "group_mappings-0-claim_value": "Engineering", "group_mappings-0-group": str(power.pk),
    }
    # An IdP that cannot be reached (and never passed a test sign-in) cannot be saved as enabled: a form error.
    refused = client_b.post("/admin/access/oidcconfig/add/", form)
    assert refused.status_code == 200 and "cannot be switched on" in refused.content.decode()
    with in_tenant(tenant_b):
        assert not OIDCConfig.objects.exists()
    del form["enabled"]
    response = client_b.post("/admin/access/oidcconfig/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    with in_tenant(tenant_b):
        config = OIDCConfig.objects.get()
        assert config.client_secret == "very-secret-value"
        assert config.email_domains == ["example.com", "example.org"]
        assert config.audiences == ["api://atrium"]
        assert [(m.claim_value, m.group.name) for m in config.group_mappings.all()] == [("Engineering", "power_user")]
        with connection.cursor() as cursor:
            cursor.execute("SELECT client_secret FROM access_oidcconfig")
            stored = cursor.fetchone()[0]
        assert "very-secret-value" not in stored  # encrypted at rest
    change = client_b.get("/admin/access/oidcconfig/1/change/").content.decode()
    assert "very-secret-value" not in change
    # Viewing the page fetches nothing (issue 14, SSRF); the explicit test explains that the IdP cannot be used.
    assert "Not usable" not in change and 'id="test-connection"' in change
    tested = client_b.post("/admin/access/oidcconfig/1/test-connection/", follow=True).content.decode()
    assert "Not usable" in tested
    # A second configuration cannot be added; blank secret on edit keeps the stored one.
    assert client_b.get("/admin/access/oidcconfig/add/").status_code == 403
    form.update({"client_secret": "", "display_name": "Okta SSO", "group_mappings-INITIAL_FORMS": "1",
                 "group_mappings-0-id": str(config.group_mappings.get().pk), "group_mappings-0-config": "1"})
    assert client_b.post("/admin/access/oidcconfig/1/change/", form).status_code == 302
    with in_tenant(tenant_b):
        assert OIDCConfig.objects.get().client_secret == "very-secret-value"
        assert OIDCConfig.objects.get().display_name == "Okta SSO"
    # The login page offers SSO when enabled.
    with in_tenant(tenant_b):
        OIDCConfig.objects.update(enabled=True)
    client_b.logout()
    assert "Sign in with Okta SSO" in client_b.get("/accounts/login/").content.decode()


def test_public_site_does_not_offer_tenant_access_models(public_client: Any, tenants: Any, db: None) -> None:
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("platform-admin-x", "p@example.com", "pw-Secret-123")
    public_client.force_login(admin)
    index = public_client.get("/admin/").content.decode()
    assert "/admin/access/" not in index
    assert public_client.get("/admin/access/oidcconfig/").status_code in (403, 404)


def test_login_page_without_sso_has_no_sso_button(client_a: Any, in_tenant: Any, tenant_a: Any,
                                                  sso: IdpServers) -> None:
    from access.models import OIDCConfig

    assert "Sign in with IdP A" in client_a.get("/accounts/login/").content.decode()
    with in_tenant(tenant_a):
        OIDCConfig.objects.filter(pk=1).update(enabled=False)
    page = client_a.get("/accounts/login/").content.decode()
    assert "Sign in with" not in page
    assert 'name="password"' in page  # password login stays for local admins
    assert client_a.get("/oidc/authenticate/").status_code == 404


def test_role_edited_in_groups_admin_applies_to_the_next_api_request(tenant_a: Any, client_a: Any,
                                                                     make_user: Any, in_tenant: Any) -> None:
    from django.contrib.auth.models import Group, Permission
    from django.test import Client

    from access.services import api_key_create

    admin_user = make_user(tenant_a, role="admin", is_staff=True)
    member = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        _key, raw = api_key_create(user=member, name="edit test")
        client_a.force_login(admin_user)
        group = Group.objects.get(name="basic_user")
        keep = [p.pk for p in group.permissions.exclude(codename="use_haiku")]
        opus = Permission.objects.get(content_type__app_label="access", codename="use_opus").pk
    api = Client(HTTP_HOST="alpha.localhost")
    assert api.get("/api/access/me/", HTTP_X_API_KEY=raw).json()["tiers"] == ["sonnet", "haiku"]
    response = client_a.post(f"/admin/auth/group/{group.pk}/change/",
                             {"name": "basic_user", "permissions": [*keep, opus]})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert api.get("/api/access/me/", HTTP_X_API_KEY=raw).json()["tiers"] == ["opus", "sonnet"]
