"""Consent pages: the processing notice, accept, withdraw (/consent/)."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Q
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from audit.chain import chain_verify, pseudonym, tenant_key
from audit.gdpr import JobRefused, download_check, download_token, gdpr_request, gdpr_retry, may_download
from audit.models import AuditEntry, Consent, GdprJob
from audit.services import audit_record, consent_active, consent_give, consent_withdraw, notice_current


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/chat/"
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else "/chat/"


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest) -> HttpResponse:
    tenant = connection.tenant  # type: ignore[attr-defined]
    notice = notice_current(tenant)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "accept" and notice is not None:
            if str(notice.version) != request.POST.get("version"):
                messages.error(request, "The notice changed while you were reading it; please read the new version.")
                return redirect(f"/consent/?next={_next(request)}")
            consent_give(request.user, notice, request)
            return redirect(_next(request))
        if action == "withdraw":
            consent_withdraw(request.user, request)
            messages.info(request, "Consent withdrawn. You can no longer use models until you accept again.")
            return redirect("/consent/")
    history = Consent.objects.filter(user_id=int(request.user.pk or 0)).select_related("notice")[:20]
    return render(request, "audit/consent.html", {
        "notice": notice, "accepted": notice is not None and consent_active(request.user, notice),
        "history": history, "next": _next(request),
    })


# --- compliance console and self-service exports ------------------------------------------------------

COMPLIANCE_PERMS = ("audit.view_audit", "audit.export_data", "audit.delete_data")


def _compliance(user: Any) -> bool:
    return any(user.has_perm(p) for p in COMPLIANCE_PERMS)


def _find_user(query: str) -> Any:
    query = query.strip()
    if not query:
        return None
    users = get_user_model().objects.filter(Q(username=query) | Q(email__iexact=query))
    return users.first() if users.count() == 1 else None


def _job_json(job: GdprJob, viewer: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(job.id), "kind": job.kind, "status": job.status, "progress": job.progress, "step": job.step,
        "subject": job.subject_label or job.subject_ref, "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None, "error": job.error,
        "counts": job.counts, "size": job.size,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
    }
    if job.kind == GdprJob.Kind.EXPORT and job.status == GdprJob.Status.DONE and may_download(job, viewer):
        data["download"] = f"/compliance/exports/{job.id}/download/?token={download_token(job, viewer)}"
    return data


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def compliance(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not _compliance(user):
        return render(request, "audit/refused.html",
                      {"message": "The compliance console needs a compliance role (audit.view_audit, "
                                  "audit.export_data or audit.delete_data)."}, status=403)
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action in ("export", "deletion"):
            needed = "audit.export_data" if action == "export" else "audit.delete_data"
            subject = _find_user(request.POST.get("subject", ""))
            if not user.has_perm(needed):
                messages.error(request, f"You may not request this (missing permission {needed}).")
            elif subject is None:
                messages.error(request, "No single user matches that username or email.")
            elif action == "deletion" and request.POST.get("confirm") != "yes":
                messages.error(request, "Tick the confirmation box to delete a user's data; it cannot be undone.")
            else:
                try:
                    job = gdpr_request(kind=action, subject=subject, requested_by=user, request=request)
                    messages.info(request, f"{action.title()} job {job.id} queued for {subject.get_username()}.")
                except JobRefused as exc:
                    messages.error(request, exc.message)
        elif action == "retry":
            job_id = request.POST.get("job", "")
            failed = GdprJob.objects.filter(pk=job_id).first() if _uuid(job_id) else None
            if failed is not None:
                gdpr_retry(failed, by=user, request=request)
        elif action == "verify" and user.has_perm("audit.view_audit"):
            result = chain_verify()
            with transaction.atomic():
                audit_record(event_type="audit_verified", user=user, request=request,
                             status="success" if result.ok else "error",
                             metadata={"entries": result.entries, "ok": result.ok, "broken_seq": result.broken_seq})
            (messages.info if result.ok else messages.error)(request, f"Audit chain: {result}")
        return redirect("/compliance/")
    jobs = [_job_json(j, user) for j in GdprJob.objects.select_related("requested_by")[:100]]
    context: dict[str, Any] = {"jobs": jobs, "can_export": user.has_perm("audit.export_data"),
                               "can_delete": user.has_perm("audit.delete_data"),
                               "can_audit": user.has_perm("audit.view_audit")}
    if context["can_audit"]:
        context.update(_audit_page(request))
    return render(request, "audit/compliance.html", context)


def _audit_page(request: HttpRequest) -> dict[str, Any]:
    entries = AuditEntry.objects.all()
    filters = {k: request.GET.get(k, "").strip() for k in ("event_type", "user", "status", "since", "until")}
    if filters["event_type"]:
        entries = entries.filter(event_type=filters["event_type"])
    if filters["status"]:
        entries = entries.filter(status=filters["status"])
    if filters["user"]:
        found = _find_user(filters["user"])
        entries = entries.filter(actor=pseudonym(tenant_key(), found.pk)) if found else entries.none()
    if filters["since"]:
        entries = entries.filter(timestamp__date__gte=filters["since"])
    if filters["until"]:
        entries = entries.filter(timestamp__date__lte=filters["until"])
    paginator = Paginator(entries.order_by("-seq"), 50)
    page = paginator.get_page(request.GET.get("page"))
    event_types = AuditEntry.objects.order_by().values_list("event_type", flat=True).distinct()
    return {"entries": page, "filters": filters, "event_types": sorted(set(event_types))}


@never_cache
@login_required
def compliance_jobs(request: HttpRequest) -> HttpResponse:
    """JSON the console polls for progress."""
    if not _compliance(request.user):
        return JsonResponse({"error": "compliance role required"}, status=403)
    return JsonResponse({"jobs": [_job_json(j, request.user) for j in GdprJob.objects.all()[:100]]})


@never_cache
@login_required
def export_download(request: HttpRequest, job_id: str) -> HttpResponseBase:
    job = GdprJob.objects.filter(pk=job_id).first() if _uuid(job_id) else None
    if job is None:
        return render(request, "audit/refused.html", {"message": "No such export."}, status=404)
    reason = download_check(job, request.user, request.GET.get("token", ""))
    if reason is not None:
        status = 410 if "expired" in reason else 403
        return render(request, "audit/refused.html", {"message": reason}, status=status)
    with transaction.atomic():
        audit_record(event_type="export_downloaded", user=request.user, request=request,
                     metadata={"job": str(job.id), "subject": job.subject_ref})
    return FileResponse(default_storage.open(job.file, "rb"), as_attachment=True,
                        filename=f"atrium-export-{job.subject_ref[:8]}-{job.created_at:%Y%m%d}.zip",
                        content_type="application/zip")


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def my_data(request: HttpRequest) -> HttpResponse:
    """A user's own exports: request one, follow it, download it."""
    if request.method == "POST":
        job = gdpr_request(kind=GdprJob.Kind.EXPORT, subject=request.user, requested_by=request.user,
                           request=request)
        messages.info(request, f"Export {job.id} requested; it appears below when ready.")
        return redirect("/account/data/")
    jobs = [_job_json(j, request.user) for j in GdprJob.objects.filter(kind=GdprJob.Kind.EXPORT,
                                                                       subject_id=request.user.pk)[:20]]
    return render(request, "audit/my_data.html", {"jobs": jobs})
