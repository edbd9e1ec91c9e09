"""Access: roles and permissions, the access policy, SSO and API authentication, API keys, quotas."""
from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Sign-in and access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from access.product_names import product_names_apply

        product_names_apply()

        from access import personal_data
        from access.receivers import login_failed_audit, login_succeeded_audit
        from access.roles import roles_seed_receiver
        from tenants.signals import tenant_provisioned

        personal_data.register()
        tenant_provisioned.connect(roles_seed_receiver, dispatch_uid="access.roles_seed")
        user_logged_in.connect(login_succeeded_audit, dispatch_uid="access.login_audit")
        user_login_failed.connect(login_failed_audit, dispatch_uid="access.login_failed_audit")

        from axes.signals import user_locked_out

        from access.lockout import locked_out_audit

        user_locked_out.connect(locked_out_audit, dispatch_uid="access.login_locked_audit")

        from access.session_policy import session_started

        user_logged_in.connect(session_started, dispatch_uid="access.session_started")

        from access.mfa import sso_mfa_remember

        user_logged_in.connect(sso_mfa_remember, dispatch_uid="access.sso_mfa_remember")
