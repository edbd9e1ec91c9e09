from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from tenants.signals import tenant_provisioned

        from access.roles import roles_seed_receiver

        tenant_provisioned.connect(roles_seed_receiver, dispatch_uid="access.roles_seed")
