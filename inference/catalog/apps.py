from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "inference.catalog"
    label = "catalog"
    verbose_name = "Model catalog and provider health"
    default_auto_field = "django.db.models.BigAutoField"
