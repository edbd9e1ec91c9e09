from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_delete


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Conversations and usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from inference import personal_data
        from inference.services import _user_pre_delete

        personal_data.register()

        pre_delete.connect(_user_pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="usage_anonymise")
