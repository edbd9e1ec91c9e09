from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "inference.catalog"
    label = "catalog"
    verbose_name = "Model catalog and provider health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from inference.catalog import signals  # noqa: F401
