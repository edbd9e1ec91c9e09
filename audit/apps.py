from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Compliance and records"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import receivers
        from audit.gdpr import handlers

        handlers.register()
        from tenants.signals import tenant_policy_changed

        tenant_policy_changed.connect(receivers.tenant_policy_changed, dispatch_uid="audit_tenant_policy_changed")
        from tenants.signals import platform_object_changed, tenant_provisioned

        tenant_provisioned.connect(receivers.tenant_provisioned, dispatch_uid="audit_tenant_provisioned")

        platform_object_changed.connect(receivers.platform_object_changed, dispatch_uid="audit_platform_object_changed")
