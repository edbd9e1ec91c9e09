"""Consent pages: the processing notice, accept, withdraw (/consent/)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from audit.models import Consent
from audit.services import consent_active, consent_give, consent_withdraw, notice_current


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
    history = Consent.objects.filter(user=request.user).select_related("notice")[:20]
    return render(request, "audit/consent.html", {
        "notice": notice, "accepted": notice is not None and consent_active(request.user, notice),
        "history": history, "next": _next(request),
    })
