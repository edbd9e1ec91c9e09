"""Seed the catalog with the current Claude models; admins edit or add rows afterwards."""

from datetime import UTC, datetime

from django.db import migrations

MODELS = [
    # model_id, display name, tier, bedrock id, vertex id, input / output list price (cents per MTok), sort
    ("claude-opus-5-5", "Claude Opus 5.5", "opus", "anthropic.claude-opus-5-5-v1:0", "claude-opus-5-5", 1500, 7500, 10),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet", "anthropic.claude-sonnet-5-5-v1:0", "claude-sonnet-5-5",
     300, 1500, 20),
    ("claude-haiku-5-5", "Claude Haiku 5.5", "haiku", "anthropic.claude-haiku-5-5-v1:0", "claude-haiku-5-5",
     100, 500, 30),
]


def seed(apps, schema_editor):
    CatalogModel = apps.get_model("catalog", "CatalogModel")
    for model_id, name, tier, bedrock_id, vertex_id, price_in, price_out, sort in MODELS:
        CatalogModel.objects.update_or_create(
            model_id=model_id,
            defaults={
                "display_name": name,
                "tier": tier,
                "is_tier_default": True,
                "aliases": [f"{model_id}-latest"],
                "anthropic_id": model_id,
                "bedrock_id": bedrock_id,
                "bedrock_profile": "global",
                "vertex_id": vertex_id,
                "input_price_cents_per_mtok": price_in,
                "output_price_cents_per_mtok": price_out,
                "released_at": datetime(2026, 9, 1, tzinfo=UTC),
                "sort_order": sort,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("catalog", "CatalogModel").objects.filter(model_id__in=[m[0] for m in MODELS]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
