"""Drop this process's catalog and price caches when the catalog or a price is edited."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from inference.catalog.models import CatalogModel, ModelPrice
from inference.catalog.pricing import prices_invalidate
from inference.catalog.selectors import catalog_invalidate


@receiver([post_save, post_delete], sender=CatalogModel)
def catalog_changed(**kwargs: Any) -> None:
    catalog_invalidate()
    prices_invalidate()


@receiver([post_save, post_delete], sender=ModelPrice)
def price_changed(**kwargs: Any) -> None:
    prices_invalidate()
