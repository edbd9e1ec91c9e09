"""The compliance console (/compliance/): one view per action.

Each action is its own URL and view: it validates its input, checks the one permission that action needs and calls
a service. The page itself only reads. (An earlier single POST handler dispatched on an `action` field with the
checks inline, and the retry branch had none: a user holding only audit.view_audit could re-run a deletion.)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from audit.chain import pseudonym, tenant_key
from audit.details import entry_details, names_for, names_for_refs
from audit.gdpr import JobRefused, gdpr_request, gdpr_retry, may_download
from audit.models import AuditEntry, DeletionReceipt, GdprJob
from audit.receipts import receipt_data, receipt_document
from audit.services import audit_chain_check, audit_record
from config.http import error_body
from config.users import request_user

COMPLIANCE_PERMS = ("audit.view_audit", "audit.export_data", "audit.delete_data")
# Deletion receipts: for whoever requests deletions and for auditors.
RECEIPT_PERMS = ("audit.delete_data", "audit.view_audit")
AUDIT_PAGE_SIZE = 25
# The permission each job kind needs, to request it and to retry it.
JOB_PERMS = {GdprJob.Kind.EXPORT: "audit.export_data", GdprJob.Kind.DELETION: "audit.delete_data"}
View = Callable[..., HttpResponse]


def _refused(request: HttpRequest, message: str, status: int = 403) -> HttpResponse:
    if request.path.endswith(".json"):
        return JsonResponse(error_body(status, message), status=status)
    return render(request, "audit/refused.html", {"message": message}, status=status)


def compliance_role(user: Any) -> bool:
    return any(user.has_perm(p) for p in COMPLIANCE_PERMS)


def _needs(*perms: str) -> Callable[[View], View]:
    """Sign-in, then any of `perms`; a 403 page (JSON for .json URLs) otherwise."""
    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not any(request.user.has_perm(p) for p in perms):
                return _refused(request, f"This needs the permission {' or '.join(perms)}.")
            return view(request, *args, **kwargs)
        return never_cache(login_required(wrapped))
    return decorate


def _find_user(query: str) -> Any:
    query = query.strip()
    if not query:
        return None
    users = get_user_model().objects.filter(Q(username=query) | Q(email__iexact=query))
    return users.first() if users.count() == 1 else None


def _requester(job: GdprJob) -> str:
    if job.requested_by_id is None:
        return "—"
    if job.requested_by_id == job.subject_id:
        return "the user themselves"
    return job.requested_by.get_username() if job.requested_by else "—"


def job_json(job: GdprJob, viewer: Any) -> dict[str, Any]:
    """A job as the console and the polling script show it (and only the links this viewer may follow)."""
    data: dict[str, Any] = {
        "id": str(job.id), "kind": job.kind, "status": job.status, "progress": job.progress, "step": job.step,
        "subject": job.subject_label or f"pseudonym {job.subject_ref[:12]}", "requested_by": _requester(job),
        "created_at": job.created_at.isoformat(), "created": f"{job.created_at:%Y-%m-%d %H:%M}",
        "finished_at": job.finished_at.isoformat() if job.finished_at else None, "error": job.error,
        "counts": job.counts, "size": job.size,
        "expires_at": job.expires_at.isoformat() if job.expires_at else None,
    }
    if job.kind == GdprJob.Kind.EXPORT and job.status == GdprJob.Status.DONE and may_download(job, viewer):
        data["download"] = reverse("export_download", args=[job.id])  # the session decides, not the URL
    if job.kind == GdprJob.Kind.DELETION and job.status == GdprJob.Status.DONE:
        conversations, messages = int(job.counts.get("conversations", 0)), int(job.counts.get("messages", 0))
        data["summary"] = (f"{conversations} conversation{pluralize(conversations)}, "
                           f"{messages} message{pluralize(messages)} deleted")
        if any(viewer.has_perm(p) for p in RECEIPT_PERMS):
            data["receipt"] = reverse("compliance_receipt", args=[job.id])
    if job.status == GdprJob.Status.FAILED and viewer.has_perm(JOB_PERMS[GdprJob.Kind(job.kind)]):
        data["retry"] = reverse("compliance_job_retry", args=[job.id])
    return data


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# --- the page (read only) ----------------------------------------------------------------------------

@require_GET
@_needs(*COMPLIANCE_PERMS)
def compliance(request: HttpRequest) -> HttpResponse:
    user = request.user
    jobs = [job_json(j, user) for j in GdprJob.objects.select_related("requested_by")[:100]]
    context: dict[str, Any] = {"jobs": jobs, "can_export": user.has_perm("audit.export_data"),
                               "can_delete": user.has_perm("audit.delete_data"),
                               "can_audit": user.has_perm("audit.view_audit"),
                               "jobs_url": reverse("compliance_jobs")}
    if context["can_audit"]:
        context.update(_audit_page(request))
    return render(request, "audit/compliance.html", context)


def _audit_page(request: HttpRequest) -> dict[str, Any]:
    entries = AuditEntry.objects.all()
    filters = {k: request.GET.get(k, "").strip() for k in ("event_type", "user", "status", "since", "until")}
    dates = forms.DateField(required=False)
    for bound in ("since", "until"):
        try:
            dates.clean(filters[bound])
        except forms.ValidationError:
            filters[bound] = ""  # a malformed date filters nothing rather than failing the page
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
    paginator = Paginator(entries.order_by("-seq"), AUDIT_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    names = names_for(page.object_list)
    rows = [{"entry": e, "who": names.get(e.actor) or e.personal.get("username") or
             (f"pseudonym {e.actor[:12]}" if e.actor else "—"), "details": entry_details(e, names)}
            for e in page.object_list]
    event_types = AuditEntry.objects.order_by().values_list("event_type", flat=True).distinct()
    query = {k: v for k, v in filters.items() if v}
    return {"entries": page, "rows": rows, "filters": filters, "event_types": sorted(set(event_types)),
            "filter_query": urlencode(query), "export_query": urlencode(query)}


@require_GET
@_needs(*COMPLIANCE_PERMS)
def compliance_jobs(request: HttpRequest) -> HttpResponse:
    """JSON the console polls for progress (static/audit-jobs.js), instead of reloading the page."""
    jobs = GdprJob.objects.select_related("requested_by")[:100]
    return JsonResponse({"jobs": [job_json(j, request.user) for j in jobs]})


# --- actions: one view each ----------------------------------------------------------------------------

class JobRequestForm(forms.Form):
    subject = forms.CharField(max_length=254)
    confirm = forms.BooleanField(required=False)


def _job_request(request: HttpRequest, kind: str) -> HttpResponse:
    form = JobRequestForm(request.POST)
    subject = _find_user(form.cleaned_data["subject"]) if form.is_valid() else None
    if subject is None:
        messages.error(request, "No single user matches that username or email.")
    elif kind == GdprJob.Kind.DELETION and not form.cleaned_data["confirm"]:
        messages.error(request, "Tick the confirmation box to delete a user's data; it cannot be undone.")
    else:
        try:
            job = gdpr_request(kind=kind, subject=subject, requested_by=request.user, request=request)
            messages.info(request, f"{kind.title()} job {job.id} queued for {subject.get_username()}.")
        except JobRefused as exc:
            messages.error(request, exc.message)
    return redirect("compliance")


@require_POST
@_needs(JOB_PERMS[GdprJob.Kind.EXPORT])
def job_export(request: HttpRequest) -> HttpResponse:
    return _job_request(request, GdprJob.Kind.EXPORT)


@require_POST
@_needs(JOB_PERMS[GdprJob.Kind.DELETION])
def job_deletion(request: HttpRequest) -> HttpResponse:
    return _job_request(request, GdprJob.Kind.DELETION)


@require_POST
@_needs(*JOB_PERMS.values())
def job_retry(request: HttpRequest, job_id: str) -> HttpResponse:
    """Retrying a job needs the same permission as requesting one of its kind."""
    key = parse_uuid(job_id)
    job = GdprJob.objects.filter(pk=key).first() if key else None
    if job is None:
        return _refused(request, "No such job.", status=404)
    if not request.user.has_perm(JOB_PERMS[GdprJob.Kind(job.kind)]):
        return _refused(request, f"Retrying a {job.kind} job needs the permission {JOB_PERMS[GdprJob.Kind(job.kind)]}.")
    if job.status != GdprJob.Status.FAILED:
        messages.error(request, "Only a failed job can be retried.")
    else:
        gdpr_retry(job, by=request.user, request=request)
        messages.info(request, f"{job.kind.title()} job {job.id} queued again.")
    return redirect("compliance")


@require_POST
@_needs("audit.view_audit")
def chain_verify(request: HttpRequest) -> HttpResponse:
    result = audit_chain_check(user=request_user(request), request=request)
    (messages.info if result.ok else messages.error)(request, f"Audit chain: {result}")
    return redirect("compliance")


# --- deletion receipts: viewed in the console, downloaded as a signed document --------------------------------

def _receipt(job_id: str) -> DeletionReceipt | None:
    key = parse_uuid(job_id)
    return DeletionReceipt.objects.select_related("job").filter(job_id=key).first() if key else None


@require_GET
@_needs(*RECEIPT_PERMS)
def receipt_view(request: HttpRequest, job_id: str) -> HttpResponse:
    receipt = _receipt(job_id)
    if receipt is None:
        return _refused(request, "No receipt for this job (is the deletion finished?).", status=404)
    data = receipt_data(receipt)
    requester = names_for_refs([data["requested_by"]]).get(data["requested_by"], "")
    return render(request, "audit/receipt.html", {"receipt": receipt, "data": data, "requester": requester})


@require_GET
@_needs(*RECEIPT_PERMS)
def receipt_download(request: HttpRequest, job_id: str) -> HttpResponse:
    receipt = _receipt(job_id)
    if receipt is None:
        return _refused(request, "No receipt for this job (is the deletion finished?).", status=404)
    document = receipt_document(receipt)
    with transaction.atomic():
        audit_record(event_type="receipt_downloaded", user=request_user(request), request=request,
                     metadata={"job": str(receipt.job_id), "subject": receipt.subject_ref})
    response = HttpResponse(document, content_type="text/html; charset=utf-8")
    completed = receipt.completed_at.astimezone(UTC)
    name = f"deletion-receipt-{str(receipt.job_id)[:8]}-{completed:%Y%m%d-%H%M%S}.html"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response
