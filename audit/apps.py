from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit and compliance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit import receivers
        from audit.gdpr import handlers

        handlers.register()
        from tenants.signals import tenant_policy_changed

        tenant_policy_changed.connect(receivers.tenant_policy_changed, dispatch_uid="audit_tenant_policy_changed")
        import importlib.util

        from tenants.signals import platform_object_changed

        # The platform trail (audit.platform) is built separately; until it is installed, platform changes are
        # recorded in the affected tenant's trail only (tenant_policy_changed) and this logs that gap at start.
        if importlib.util.find_spec("audit.platform") is not None:
            platform_object_changed.connect(receivers.platform_object_changed,
                                            dispatch_uid="audit_platform_object_changed")
        else:
            import logging

            logging.getLogger(__name__).warning("audit.platform is not installed: platform changes are not "
                                                "recorded in the platform trail")
