"""Django's and third-party apps' names in the product's words (docs/tenants.md), set once at start-up so every
admin page uses them: the index, the sidebar, the breadcrumbs, the titles ("Add role") and the messages.

App names are not part of any migration. Model names are set on the models' options at run time, not in a Meta
(these are Django's models): migrations read a model's declared options (`_meta.original_attrs`), so nothing
here changes Django's own migrations (tests/architecture/test_migrations.py)."""

from __future__ import annotations

from django.apps import apps

APP_NAMES = {"auth": "People and roles", "axes": "Sign-in lockouts", "otp_totp": "Second factor (TOTP)",
             "django_otp_webauthn": "Second factor (passkeys)"}
MODEL_NAMES = {("auth", "group"): ("role", "roles"), ("auth", "user"): ("member", "members")}


def product_names_apply() -> None:
    for label, name in APP_NAMES.items():
        if label in apps.app_configs:
            apps.get_app_config(label).verbose_name = name
    for (label, model_name), (singular, plural) in MODEL_NAMES.items():
        opts = apps.get_model(label, model_name)._meta
        opts.verbose_name, opts.verbose_name_plural = singular, plural
