from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Conversations and usage"
    default_auto_field = "django.db.models.BigAutoField"
