"""Writes on tenants: provisioning from the template schema, policy and credential changes, deletion."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django_tenants.utils import schema_context, schema_exists

from tenants import crypto, queries
from tenants.fields import EncryptedJSONField, EncryptedTextField
from tenants.models import Domain, Tenant
from tenants.signals import tenant_provisioned
from tenants.validators import validate_allowed_models, validate_domain, validate_provider_order, validate_slug

logger = logging.getLogger(__name__)

_template_current_for: set[str] = set()


class TenantExists(Exception):
    """A tenant with this slug or domain already exists; nothing was changed."""


def schema_name_for(slug: str) -> str:
    return slug.replace("-", "_")


def _template_needs_migration(schema: str) -> bool:
    with schema_context(schema):
        executor = MigrationExecutor(connection)
        targets = executor.loader.graph.leaf_nodes()
        return bool(executor.migration_plan(targets))


def tenant_template_sync(*, force: bool = False) -> None:
    """Create or migrate the template schema new tenants are cloned from.

    Cloning a migrated schema takes a fraction of the time of running every tenant migration,
    which keeps provisioning under a second (bench/tenant_create.py). Checked once per process.
    """
    from django.core.management import call_command

    template = settings.TENANT_BASE_SCHEMA
    db_key = f"{connection.settings_dict['NAME']}:{template}"
    if db_key in _template_current_for and not force:
        return
    if not schema_exists(template):
        queries.schema_create(template)
        stale = True
    else:
        stale = _template_needs_migration(template)
    if stale:
        logger.info("migrating tenant template schema %s", template)
        call_command("migrate_schemas", tenant=True, schema_name=template, interactive=False, verbosity=0)
    with schema_context(template):
        tenant_provisioned.send(sender=Tenant, schema_name=template)
    connection.set_schema_to_public()  # type: ignore[attr-defined]
    _template_current_for.add(db_key)


@dataclass(frozen=True)
class Provisioned:
    tenant: Tenant
    domain: Domain
    admin_username: str | None = None
    admin_password: str | None = None


def _tenant_admin_create(*, email: str, invite: bool = False) -> tuple[str, str | None]:
    """First administrator of a new tenant, with a random one-time password the caller shows once.

    Staff with the seeded `admin` role's explicit permissions, never a superuser (the schema refuses one)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    # Invited: no password until the administrator sets one through the mailed link (tenant_invite_send).
    password = None if invite else secrets.token_urlsafe(12)
    user = user_model.objects.create_user(
        username=email, email=email, password=password, is_staff=True
    )
    user.groups.add(Group.objects.get(name="admin"))
    return email, password


def tenant_provision(
    *, slug: str, name: str, domain: str | None = None, admin_email: str | None = None, invite: bool = False,
    **policy: Any
) -> Provisioned:
    """Create a tenant: its row, its schema (cloned from the template), its domain, roles and first admin.

    All or nothing: a failure at any step leaves no row, no schema and no domain behind.
    """
    if admin_email is not None:
        try:
            validate_email(admin_email)
        except ValidationError as exc:
            raise ValidationError(f"Invalid admin email {admin_email!r}.") from exc
    validate_slug(slug)
    domain = (domain or f"{slug}.{settings.ATRIUM_BASE_DOMAIN}").lower()
    validate_domain(domain)
    schema_name = schema_name_for(slug)
    if Tenant.objects.filter(schema_name=schema_name).exists():
        raise TenantExists(f"A tenant with slug {slug!r} already exists.")
    if Domain.objects.filter(domain=domain).exists():
        raise TenantExists(f"The domain {domain!r} already belongs to a tenant.")
    if "allowed_models" in policy:
        validate_allowed_models(policy["allowed_models"])
    if "provider_order" in policy:
        validate_provider_order(policy["provider_order"])

    tenant_template_sync()
    tenant = Tenant(schema_name=schema_name, name=name, **policy)
    tenant.full_clean(exclude=["credentials", "audit_key"])
    try:
        with transaction.atomic():
            tenant.save(verbosity=0)  # clones the template schema (django-tenants, TENANT_BASE_SCHEMA)
            domain_row = Domain.objects.create(domain=domain, tenant=tenant, is_primary=True)
            admin: tuple[str | None, str | None] = (None, None)
            with schema_context(schema_name):
                tenant_provisioned.send(sender=Tenant, schema_name=schema_name)
                if admin_email:
                    admin = _tenant_admin_create(email=admin_email, invite=invite)
    finally:
        connection.set_schema_to_public()  # type: ignore[attr-defined]
    logger.info("tenant provisioned", extra={"tenant": schema_name})
    return Provisioned(tenant=tenant, domain=domain_row, admin_username=admin[0], admin_password=admin[1])


def tenant_delete(*, tenant: Tenant, drop_schema: bool) -> None:
    """Delete a tenant row and, when asked, its schema with every row in it."""
    tenant.auto_drop_schema = drop_schema
    tenant.delete(force_drop=drop_schema)


def tenant_credentials_set(*, tenant: Tenant, provider: str, values: dict[str, Any]) -> Tenant:
    """Replace one provider's credentials; blank values keep what was stored (the admin never shows secrets)."""
    if provider not in {"anthropic", "bedrock", "vertex"}:
        raise ValidationError(f"Unknown provider {provider!r}.")
    current = dict(tenant.credentials or {})
    section = dict(current.get(provider) or {})
    for key, value in values.items():
        if value in (None, ""):
            continue
        section[key] = value
    current[provider] = section
    tenant.credentials = current
    tenant.save(update_fields=["credentials"])
    return tenant


def _encrypted_columns() -> list[tuple[str, list[str]]]:  # (table, [column])
    """(table, columns) for every model with an encrypted field, whichever app defines it."""
    found = []
    for model in apps.get_models():
        columns = [
            str(f.column) for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField | EncryptedJSONField)
        ]
        if columns:
            found.append((model._meta.db_table, columns))
    return found


def encryption_keys_rotate() -> int:
    """Re-encrypt every stored secret, in every schema, under the first key of ATRIUM_ENCRYPTION_KEYS.

    Returns the number of rows rewritten. Safe to re-run: a value already under the first key is
    simply re-encrypted again.
    """
    crypto.reset_keys()
    schemas = ["public", *Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)]
    count = 0
    with transaction.atomic():
        for schema in schemas:
            for table, columns in _encrypted_columns():
                if not queries.table_present(schema, table):
                    continue
                for row in queries.encrypted_rows(schema, table, columns, for_update=True):
                    rotated = {c: crypto.rotate(v) if v else v for c, v in row.values.items()}
                    queries.encrypted_row_update(schema, table, row.id, rotated)
                    count += 1
    return count


def tenant_public_ensure(*, domain: str) -> Tenant:
    """The public tenant row serves the platform admin on the bare host. Idempotent."""
    public, _ = Tenant.objects.get_or_create(schema_name="public", defaults={"name": "Platform"})
    Domain.objects.get_or_create(domain=domain.lower(), defaults={"tenant": public, "is_primary": True})
    return public


def tenant_invite_link(*, schema_name: str, username: str, base_url: str) -> str:
    """A set-password link for `username` on its tenant's host, valid for PASSWORD_RESET_TIMEOUT seconds and
    only until the password is set (Django's reset tokens hash the password and the last login)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    with schema_context(schema_name):
        user = get_user_model().objects.get(username=username)
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = default_token_generator.make_token(user)
    return f"{base_url.rstrip('/')}/accounts/reset/{uid}/{token}/"


def tenant_invite_send(*, schema_name: str, tenant_name: str, email: str, base_url: str) -> None:
    """Mail the first administrator its set-password link through Django's mail backend."""
    from django.core.mail import send_mail

    link = tenant_invite_link(schema_name=schema_name, username=email, base_url=base_url)
    hours = int(settings.PASSWORD_RESET_TIMEOUT // 3600)
    send_mail(
        subject=f"You administer {tenant_name} on Atrium",
        message=(f"An Atrium organisation, {tenant_name}, was created with you as its administrator.\n\n"
                 f"Set your password here (the link works once and expires in {hours} hours):\n{link}\n\n"
                 f"Then sign in at {base_url.rstrip('/')}/admin/."),
        from_email=None, recipient_list=[email],
    )
