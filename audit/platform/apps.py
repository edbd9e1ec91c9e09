from django.apps import AppConfig


class AuditPlatformConfig(AppConfig):
    """A shared app (public schema only): its tables never exist in a tenant schema."""

    name = "audit.platform"
    label = "audit_platform"
    verbose_name = "Platform audit"
    default_auto_field = "django.db.models.BigAutoField"
