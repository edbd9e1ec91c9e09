import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0006_security_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="own_anthropic_beta_allowed",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=100), blank=True, default=list,
                help_text="Set by the tenant: the anthropic-beta names its callers may send, a subset of the "
                "platform's list. Empty adds no restriction.", size=None),
        ),
    ]
