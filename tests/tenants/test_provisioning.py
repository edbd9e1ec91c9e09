"""Provisioning: create_tenant command, its bad inputs, roles, the first admin, key rotation."""

from __future__ import annotations

import uuid
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from access.roles import ROLE_PERMISSIONS
from tenants.models import Domain, Tenant
from tenants.services import tenant_delete


def _slug() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def fresh_slug(committed: None) -> Any:
    slugs: list[str] = []

    def _new() -> str:
        slugs.append(_slug())
        return slugs[-1]

    yield _new
    for slug in slugs:
        tenant = Tenant.objects.filter(schema_name=slug.replace("-", "_")).first()
        if tenant is not None:
            tenant_delete(tenant=tenant, drop_schema=True)


def test_create_tenant_builds_schema_roles_domain_and_admin(fresh_slug: Any) -> None:
    slug = fresh_slug()
    out = StringIO()
    call_command("create_tenant", slug, "--name", "Acme", "--admin-email", "root@acme.example", stdout=out)
    tenant = Tenant.objects.get(schema_name=slug)
    assert schema_exists(slug)
    assert Domain.objects.get(tenant=tenant).domain == f"{slug}.localhost"
    password = out.getvalue().split("one-time password: ")[1].split()[0]
    with schema_context(slug):
        assert set(Group.objects.values_list("name", flat=True)) >= set(ROLE_PERMISSIONS)
        admin = get_user_model().objects.get(username="root@acme.example")
        assert admin.check_password(password)
        assert admin.groups.filter(name="admin").exists()
        basic = Group.objects.get(name="basic_user")
        codenames = set(basic.permissions.values_list("codename", flat=True))
        assert codenames == {"read", "write", "use_haiku", "use_sonnet"}
        compliance = Group.objects.get(name="compliance_officer")
        compliance_codenames = set(compliance.permissions.values_list("codename", flat=True))
        assert {"export_data", "delete_data", "view_audit"} <= compliance_codenames


def test_rerun_with_same_slug_fails_and_changes_nothing(fresh_slug: Any) -> None:
    slug = fresh_slug()
    call_command("create_tenant", slug, "--name", "First", stdout=StringIO())
    before = Tenant.objects.get(schema_name=slug)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", slug, "--name", "Second", "--admin-email", "x@example.com", stdout=StringIO())
    after = Tenant.objects.get(schema_name=slug)
    assert after.name == before.name == "First"
    with schema_context(slug):
        assert not get_user_model().objects.filter(username="x@example.com").exists()


@pytest.mark.parametrize(
    ("slug", "extra", "message"),
    [
        ("Bad_Slug", [], "Invalid slug"),
        ("admin", [], "reserved"),
        ("ab", [], "Invalid slug"),
        ("okslug", ["--domain", "not a domain"], "Invalid domain"),
        ("okslug2", ["--admin-email", "not-an-email"], "Invalid admin email"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_nothing(committed: None, slug: str, extra: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("create_tenant", slug, "--name", "X", *extra, stdout=StringIO())
    assert not Tenant.objects.filter(schema_name=slug.lower().replace("-", "_")).exists()
    assert not schema_exists(slug.lower().replace("-", "_"))


def test_domain_already_taken_is_refused(fresh_slug: Any, tenant_a: Any) -> None:
    slug = fresh_slug()
    with pytest.raises(CommandError, match="already belongs"):
        call_command("create_tenant", slug, "--name", "X", "--domain", "alpha.localhost", stdout=StringIO())
    assert not Tenant.objects.filter(schema_name=slug).exists()
    assert not schema_exists(slug)


def test_tenant_data_is_isolated(fresh_slug: Any) -> None:
    first, second = fresh_slug(), fresh_slug()
    call_command("create_tenant", first, "--name", "One", "--admin-email", "one@example.com", stdout=StringIO())
    call_command("create_tenant", second, "--name", "Two", stdout=StringIO())
    with schema_context(second):
        assert not get_user_model().objects.filter(username="one@example.com").exists()
    assert connection.schema_name == "public"
