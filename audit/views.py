"""Consent pages (/consent/), a user's own exports (/account/data/) and export downloads.

The compliance console is audit/console.py."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from audit.console import job_json, parse_uuid
from audit.gdpr import DownloadRefused, download_check, gdpr_request
from audit.gdpr.export import export_filename
from audit.models import Consent, GdprJob
from audit.services import audit_record, consent_active, consent_give, consent_withdraw, notice_current
from config.users import request_user


def _next(request: HttpRequest) -> str:
    home = reverse("chat")
    target = request.POST.get("next") or request.GET.get("next") or home
    return target if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}) else home


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
                return redirect(f"{reverse('consent')}?next={_next(request)}")
            consent_give(request_user(request), notice, request)
            return redirect(_next(request))
        if action == "withdraw":
            consent_withdraw(request_user(request), request)
            messages.info(request, "Consent withdrawn. You can no longer use models until you accept again.")
            return redirect("consent")
    history = Consent.objects.filter(user_id=int(request.user.pk or 0)).select_related("notice")[:20]
    return render(request, "audit/consent.html", {
        "notice": notice, "accepted": notice is not None and consent_active(request_user(request), notice),
        "history": history, "next": _next(request),
    })


# --- self-service exports and download links ---------------------------------------------------------

@never_cache
@login_required
@require_GET
def export_download(request: HttpRequest, job_id: str) -> HttpResponseBase:
    """The signed-in user's session is the only credential: checked against the job at every download. Links of the
    earlier kind (a signed token in the query string) are refused, so no secret lives in a URL, a history or a log."""
    if "token" in request.GET:
        return render(request, "audit/refused.html", {"message": (
            "Download links no longer carry a token. Open the export from My data or the compliance console while "
            "signed in.")}, status=400)
    key = parse_uuid(job_id)
    job = GdprJob.objects.filter(pk=key).first() if key else None
    if job is None:
        return render(request, "audit/refused.html", {"message": "No such export."}, status=404)
    try:
        download_check(job, request.user)
    except DownloadRefused as exc:
        return render(request, "audit/refused.html", {"message": exc.public_message}, status=exc.status)
    with transaction.atomic():
        audit_record(event_type="export_downloaded", user=request.user, request=request,
                     metadata={"job": str(job.id), "subject": job.subject_ref})
    return FileResponse(default_storage.open(job.file, "rb"), as_attachment=True,
                        filename=export_filename(job),
                        content_type="application/zip")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def my_data(request: HttpRequest) -> HttpResponse:
    """A user's own exports: request one, follow it, download it."""
    if request.method == "POST":
        job = gdpr_request(kind=GdprJob.Kind.EXPORT, subject=request.user, requested_by=request.user,
                           request=request)
        messages.info(request, f"Export {job.id} requested; it appears below when ready.")
        return redirect("my_data")
    return render(request, "audit/my_data.html", {"jobs": _my_jobs(request), "jobs_url": reverse("my_data_jobs")})


def _my_jobs(request: HttpRequest) -> list[dict[str, object]]:
    return [job_json(j, request.user) for j in GdprJob.objects.select_related("requested_by").filter(
        kind=GdprJob.Kind.EXPORT, subject_id=request.user.pk)[:20]]


@never_cache
@login_required
@require_GET
def my_data_jobs(request: HttpRequest) -> JsonResponse:
    """The user's own exports as JSON, polled by the page while one is being made."""
    return JsonResponse({"jobs": _my_jobs(request)})
