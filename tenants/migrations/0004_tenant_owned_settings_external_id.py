"""The tenant's own tightenings (own_*), and a platform-generated Bedrock ExternalId per tenant.

The ExternalId is added empty, filled with a distinct value per existing row, then made unique: a callable default
on AddField would give every existing row the same value.
"""

from __future__ import annotations

import secrets
from typing import Any

import django.contrib.postgres.fields
import django.core.validators
from django.db import migrations, models

import tenants.models


def fill_external_ids(apps: Any, schema_editor: Any) -> None:
    tenant_model = apps.get_model("tenants", "Tenant")
    for tenant in tenant_model.objects.filter(bedrock_external_id__isnull=True):
        tenant.bedrock_external_id = f"atrium-{secrets.token_hex(16)}"  # tenants.models.new_external_id, inlined
        tenant.save(update_fields=["bedrock_external_id"])


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_provider_options")]

    operations = [
        migrations.AddField(
            model_name="tenant", name="own_allowed_models",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=120), blank=True, default=list,
                help_text="Set by the tenant: a subset of the platform's allow-list. Empty adds no restriction.",
                size=None),
        ),
        migrations.AddField(
            model_name="tenant", name="own_max_tokens_per_request",
            field=models.PositiveIntegerField(
                blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)],
                help_text="Set by the tenant: a lower ceiling than the platform's. Empty adds no restriction."),
        ),
        migrations.AddField(
            model_name="tenant", name="own_user_requests_per_minute",
            field=models.PositiveIntegerField(
                blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)],
                help_text="Set by the tenant: a per-user request rate below the platform's limits."),
        ),
        migrations.AddField(
            model_name="tenant", name="own_user_tokens_per_day",
            field=models.PositiveBigIntegerField(
                blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)],
                help_text="Set by the tenant: per-user tokens per UTC day below the platform's limits."),
        ),
        migrations.AddField(
            model_name="tenant", name="bedrock_external_id",
            field=models.CharField(max_length=64, null=True, editable=False),
        ),
        migrations.RunPython(fill_external_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="tenant", name="bedrock_external_id",
            field=models.CharField(default=tenants.models.new_external_id, editable=False, max_length=64,
                                   unique=True),
        ),
    ]
