from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_delete, pre_delete


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from inference import personal_data
        from inference.attachments import attachment_file_delete_on_commit
        from inference.models import Attachment
        from inference.services import _user_pre_delete

        personal_data.register()
        from access.budget_rebuild import budget_readers_register
        from inference.records import usage_cost_totals, usage_costs_recorded

        budget_readers_register(calls=usage_costs_recorded, totals=usage_cost_totals)
        post_delete.connect(attachment_file_delete_on_commit, sender=Attachment,
                            dispatch_uid="attachment_file_delete")
        pre_delete.connect(_user_pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="usage_anonymise")
