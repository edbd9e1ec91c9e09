"""Access's personal data for GDPR export and erasure (config/personal_data.py): the account (profile, sessions,
admin log, the account itself), API keys and single sign-on identities."""

from __future__ import annotations

from datetime import timedelta
from typing import IO, Any

from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone
from django.utils.crypto import salted_hmac

from access.invitations import invitations_erase
from access.models import ApiKey, UserIdentity
from config.personal_data import (
    ErasureStep,
    ExportPart,
    Progress,
    json_array,
    json_object,
    register_erasure,
    register_erasure_start,
    register_export,
)


def _profile_write(subject_id: int, stream: IO[bytes], _progress: Progress) -> int:
    user = get_user_model().objects.get(pk=subject_id)
    return json_object(stream, {
        "id": user.pk, "username": user.get_username(), "email": user.email, "first_name": user.first_name,
        "last_name": user.last_name, "date_joined": user.date_joined, "last_login": user.last_login,
        "is_active": user.is_active, "roles": list(user.groups.values_list("name", flat=True))})


def _delete_some(queryset: Any, name: str, limit: int) -> dict[str, int]:
    ids = list(queryset.values_list("pk", flat=True)[:limit])
    queryset.model.objects.filter(pk__in=ids).delete()
    return {name: len(ids)}


def _sessions_erase(subject_id: int, _limit: int) -> dict[str, int]:
    removed = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now() - timedelta(days=1)).iterator():
        data = session.get_decoded()  # {} for a corrupt session
        if str(data.get("_auth_user_id")) == str(subject_id):
            session.delete()
            removed += 1
    return {"sessions": removed}


def _admin_log_erase(subject_id: int, _limit: int) -> dict[str, int]:
    user_type = ContentType.objects.get_for_model(get_user_model())
    about = LogEntry.objects.filter(content_type=user_type, object_id=str(subject_id))
    changed = about.update(object_repr="(deleted user)", change_message="[]")
    removed, _ = LogEntry.objects.filter(user_id=subject_id).delete()
    return {"admin_log": changed + removed}


def _account_erase(subject_id: int, _limit: int) -> dict[str, int]:
    from tenants.models import Tenant

    user = get_user_model().objects.filter(pk=subject_id).first()
    if user is None:
        return {"account": 0}
    tenant = Tenant.objects.get(schema_name=connection.schema_name)  # type: ignore[attr-defined]
    if tenant.gdpr_account_action == Tenant.AccountAction.REMOVE:
        user.delete()
        return {"account": 1}
    user.username = f"deleted-{salted_hmac('atrium.deleted-user', str(subject_id)).hexdigest()[:24]}"
    user.email = ""
    user.first_name = ""
    user.last_name = ""
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    return {"account": 1}


def account_suspend(subject_id: int) -> None:
    """A deletion has started: the subject's API keys, tokens and sessions are refused from now on (an inactive
    user authenticates nowhere; the API key cache is emptied by the commit)."""
    get_user_model().objects.filter(pk=subject_id).update(is_active=False)


def register() -> None:
    register_erasure_start("access.account_suspend", account_suspend)
    register_export(ExportPart("profile.json", "Your account: username, email, names, roles, dates.", 10,
                               _profile_write))
    register_export(ExportPart("api_keys.json", "Your API keys (name and visible prefix only; secrets are never "
                                                "stored).", 60, lambda subject, stream, _p: json_array(
        stream, ApiKey.objects.filter(user_id=subject).values("name", "prefix", "created_at", "expires_at",
                                                              "revoked_at", "last_used_at"))))
    register_export(ExportPart("identities.json", "Single sign-on identities (issuer and subject) linked to your "
                                                  "account.", 70, lambda subject, stream, _p: json_array(
        stream, UserIdentity.objects.filter(user_id=subject).values("issuer", "subject"))))
    register_erasure(ErasureStep("api_keys", 30, lambda subject, limit: _delete_some(
        ApiKey.objects.filter(user_id=subject), "api_keys", limit)))
    register_erasure(ErasureStep("identities", 40, lambda subject, limit: _delete_some(
        UserIdentity.objects.filter(user_id=subject), "identities", limit)))
    register_erasure(ErasureStep("invitations", 35, invitations_erase))
    register_erasure(ErasureStep("sessions", 70, _sessions_erase))
    register_erasure(ErasureStep("admin_log", 80, _admin_log_erase))
    register_erasure(ErasureStep("account", 110, _account_erase))
