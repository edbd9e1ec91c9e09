"""Seed list prices (USD per million tokens) for the demo catalog's models, effective from their release."""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

PRICES = {
    # model_id: input, output, cache read, cache write (5-minute), batch discount %
    "claude-opus-5-5": ("15", "75", "1.50", "18.75", "50"),
    "claude-sonnet-5-5": ("3", "15", "0.30", "3.75", "50"),
    "claude-haiku-5-5": ("1", "5", "0.10", "1.25", "50"),
}


def seed(apps, schema_editor):
    CatalogModel = apps.get_model("catalog", "CatalogModel")
    ModelPrice = apps.get_model("catalog", "ModelPrice")
    for model in CatalogModel.objects.filter(model_id__in=PRICES):
        price_in, price_out, cache_read, cache_write, batch = PRICES[model.model_id]
        ModelPrice.objects.get_or_create(
            model=model, provider="", effective_from=datetime(2026, 9, 1, tzinfo=UTC),
            defaults={"input_usd_per_mtok": Decimal(price_in), "output_usd_per_mtok": Decimal(price_out),
                      "cache_read_usd_per_mtok": Decimal(cache_read), "cache_write_usd_per_mtok": Decimal(cache_write),
                      "batch_discount_percent": Decimal(batch)},
        )


def unseed(apps, schema_editor):
    apps.get_model("catalog", "ModelPrice").objects.filter(model__model_id__in=PRICES, provider="").delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0004_model_prices")]
    operations = [migrations.RunPython(seed, unseed)]
