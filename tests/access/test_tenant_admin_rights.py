"""No superusers in tenants: the first administrator, the data migration, and what a tenant admin may grant."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction


def test_first_tenant_administrator_is_staff_with_the_admin_role_never_superuser(tenant_a: Any,
                                                                                 in_tenant: Any) -> None:
    from django.contrib.auth import get_user_model

    from tenants.services import _tenant_admin_create

    with in_tenant(tenant_a):
        username, _password = _tenant_admin_create(email="boss@first.example")
        boss = get_user_model().objects.get(username=username)
        assert boss.is_staff and not boss.is_superuser
        assert list(boss.groups.values_list("name", flat=True)) == ["admin"]
        assert boss.has_perm("auth.change_user") and boss.has_perm("access.add_apikey")
        assert not boss.has_perm("tenants.change_tenant") and not boss.has_perm("tenants.change_domain")


def test_the_tenant_schema_refuses_a_superuser(tenant_a: Any, in_tenant: Any) -> None:
    from django.contrib.auth import get_user_model

    with in_tenant(tenant_a), pytest.raises(IntegrityError), transaction.atomic():
        get_user_model().objects.create_user("root-attempt", is_superuser=True)


def test_migration_converts_existing_tenant_superusers(tenant_a: Any, in_tenant: Any) -> None:
    import importlib

    from django.apps import apps
    from django.contrib.auth import get_user_model

    migration = importlib.import_module("access.migrations.0004_no_tenant_superusers")
    with in_tenant(tenant_a):
        with connection.cursor() as cursor:  # the state before the migration (rolled back with the test)
            cursor.execute("ALTER TABLE auth_user DROP CONSTRAINT auth_user_no_tenant_superuser")
        legacy = get_user_model().objects.create_user("legacy-root", is_superuser=True, is_staff=False)
        migration.convert(apps, None)
        legacy.refresh_from_db()
        assert not legacy.is_superuser and legacy.is_staff
        assert legacy.groups.filter(name="admin").exists()
        assert legacy.has_perm("auth.change_group")


def _admin_client(make_user: Any, in_tenant: Any, tenant: Any, client: Any) -> Any:
    admin = make_user(tenant, role="admin", is_staff=True)
    with in_tenant(tenant):
        client.force_login(admin)
    return admin


def test_tenant_admin_cannot_make_anyone_superuser(tenant_a: Any, client_a: Any, make_user: Any,
                                                   in_tenant: Any) -> None:
    _admin_client(make_user, in_tenant, tenant_a, client_a)
    member = make_user(tenant_a, role="basic_user")
    page = client_a.get(f"/admin/auth/user/{member.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page
    form = {"username": member.username, "email": member.email, "is_active": "on", "is_staff": "on",
            "is_superuser": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    response = client_a.post(f"/admin/auth/user/{member.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    with in_tenant(tenant_a):
        member.refresh_from_db()
        assert member.is_staff and not member.is_superuser
        from audit.models import AuditEntry

        entry = AuditEntry.objects.filter(event_type="role_change").order_by("-seq").first()
        assert entry is not None and entry.metadata["flags"] == {"is_staff": True}


def test_tenant_admin_cannot_grant_a_permission_it_does_not_hold(tenant_a: Any, client_a: Any, make_user: Any,
                                                                 in_tenant: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    _admin_client(make_user, in_tenant, tenant_a, client_a)
    member = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        platform_perm = Permission.objects.get(content_type__app_label="tenants", codename="change_tenant")
        delete_key = Permission.objects.get(content_type__app_label="access", codename="delete_apikey")
        viewer = Group.objects.get(name="viewer")
    # Not offered ...
    page = client_a.get(f"/admin/auth/group/{viewer.pk}/change/").content.decode()
    assert f'value="{platform_perm.pk}"' not in page and f'value="{delete_key.pk}"' not in page
    # ... and refused when posted by hand, on a role and on a user.
    response = client_a.post(f"/admin/auth/group/{viewer.pk}/change/",
                             {"name": "viewer", "permissions": [platform_perm.pk]})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    form = {"username": member.username, "email": member.email, "is_active": "on",
            "user_permissions": [delete_key.pk], "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    response = client_a.post(f"/admin/auth/user/{member.pk}/change/", form)
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    with in_tenant(tenant_a):
        assert not viewer.permissions.filter(pk=platform_perm.pk).exists()
        assert not member.user_permissions.exists()


def test_tenant_admin_cannot_edit_someone_holding_more_than_itself(tenant_a: Any, client_a: Any, make_user: Any,
                                                                   in_tenant: Any) -> None:
    from django.contrib.auth.models import Permission

    _admin_client(make_user, in_tenant, tenant_a, client_a)
    stronger = make_user(tenant_a, role="admin", is_staff=True)
    with in_tenant(tenant_a):
        stronger.user_permissions.add(Permission.objects.get(content_type__app_label="access",
                                                             codename="delete_apikey"))
    assert client_a.post(f"/admin/auth/user/{stronger.pk}/password/",
                         {"password1": "Taken-Over-123", "password2": "Taken-Over-123"}).status_code == 403
    assert client_a.post(f"/admin/auth/user/{stronger.pk}/delete/", {"post": "yes"}).status_code == 403
    with in_tenant(tenant_a):
        stronger.refresh_from_db()
        assert stronger.check_password("pw-Secret-123")


def test_sso_configuration_and_api_key_writes_are_audited_with_the_real_actor(
        tenant_a: Any, client_a: Any, make_user: Any, in_tenant: Any) -> None:
    from access.models import ApiKey, OIDCConfig
    from audit.models import AuditEntry

    admin = _admin_client(make_user, in_tenant, tenant_a, client_a)
    member = make_user(tenant_a, role="basic_user")
    with in_tenant(tenant_a):
        OIDCConfig.objects.filter(pk=1).delete()
    form = {"display_name": "Okta", "issuer": "https://idp.example.com/oauth2/default",
            "discovery_url": "", "verify_ssl": "on", "end_session_endpoint": "", "client_id": "client-123",
            "client_secret": "very-secret-value", "scopes": "openid email profile", "groups_claim": "groups",
            "allowed_email_domains": "example.com", "api_audiences": "",
            "group_mappings-TOTAL_FORMS": "0", "group_mappings-INITIAL_FORMS": "0",
            "group_mappings-MIN_NUM_FORMS": "0", "group_mappings-MAX_NUM_FORMS": "1000"}
    assert client_a.post("/admin/access/oidcconfig/add/", form).status_code == 302
    assert client_a.post("/admin/access/apikey/add/", {"user": str(member.pk), "name": "ci"}).status_code in (
        200, 302)
    with in_tenant(tenant_a):
        sso = AuditEntry.objects.filter(event_type="sso_config_change").order_by("-seq").first()
        assert sso is not None and sso.user_id == admin.pk
        assert "client_id" in sso.metadata["fields"] and sso.metadata["secret_changed"] is True
        assert "very-secret-value" not in str(sso.metadata)
        key = ApiKey.objects.get(user=member)
        created = AuditEntry.objects.filter(event_type="api_key_create").order_by("-seq").first()
        assert created is not None and created.user_id == admin.pk and key.prefix
