"""Audit export (/compliance/audit/export.jsonl): a filtered slice of the tenant's trail as JSON Lines, with the
proofs an auditor needs to check it offline (audit/offline_verify.py).

Lines, in order: a header (chain, key fingerprint, filters, who exported it); then, for each run of entries, the
signed checkpoint that covers them (the first checkpoint at or after them) followed by the entries, each with its
sequence, its chained fields exactly as MAC'd, its previous MAC and its MAC; last a trailer with the line count and
a SHA-256 of every line before it. Personal columns (username, IP, …) are not exported: the chain covers them
through `subject_mac`, which is. The download itself is an audit entry, and is covered by the checkpoint taken for
the export.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from audit.chain import chained_body, pseudonym, tenant_key
from audit.models import AuditEntry
from audit.platform.checkpoints import chain_key_id, checkpoint_take
from audit.platform.models import ChainCheckpoint
from audit.services import audit_record
from config.http import HttpError

PERMISSION = "audit.view_audit"
BATCH = 2000
FORMAT = "atrium-audit-export"


class ExportFilters(forms.Form):
    since = forms.DateField(required=False)
    until = forms.DateField(required=False)
    event_type = forms.CharField(required=False, max_length=60)
    status = forms.CharField(required=False, max_length=20)
    user = forms.CharField(required=False, max_length=254, help_text="username or email")
    actor = forms.CharField(required=False, max_length=32, help_text="pseudonym, as in the trail")


class ExportRefused(HttpError):
    status = 400


def _actor(key: bytes, data: dict[str, Any]) -> str:
    if data["actor"]:
        return str(data["actor"])
    if not data["user"]:
        return ""
    query = str(data["user"]).strip()
    users = get_user_model().objects.filter(Q(username=query) | Q(email__iexact=query))
    if users.count() != 1:
        raise ExportRefused("No single user matches that username or email.")
    return pseudonym(key, users.get().pk)


def audit_export_start(*, request: HttpRequest, filters: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Record the export and checkpoint the head (so every exported entry is covered); (header, head seq)."""
    key = tenant_key()
    chain = str(connection.schema_name)  # type: ignore[attr-defined]
    with transaction.atomic():
        entry = audit_record(event_type="audit_exported", user=request.user, request=request,
                             metadata={"filters": {k: v for k, v in filters.items() if v}})
        checkpoint_take(chain=chain, chain_key=key, reason="export")
    header = {"type": "header", "format": FORMAT, "version": 1, "chain": chain, "key_id": chain_key_id(key),
              "exported_at": timezone.now().isoformat(timespec="microseconds"), "exported_by": entry.actor,
              "filters": {k: v for k, v in filters.items() if v}, "head_seq": entry.seq}
    return header, entry.seq


def _entries(filters: dict[str, Any], head_seq: int) -> Iterator[AuditEntry]:
    entries = AuditEntry.objects.filter(seq__lte=head_seq)
    if filters["since"]:
        entries = entries.filter(timestamp__date__gte=filters["since"])
    if filters["until"]:
        entries = entries.filter(timestamp__date__lte=filters["until"])
    if filters["event_type"]:
        entries = entries.filter(event_type=filters["event_type"])
    if filters["status"]:
        entries = entries.filter(status=filters["status"])
    if filters["actor"]:
        entries = entries.filter(actor=filters["actor"])
    last = 0
    while True:  # keyset pages: no long-held cursor (PgBouncer transaction pooling)
        page = list(entries.filter(seq__gt=last).order_by("seq")[:BATCH])
        if not page:
            return
        yield from page
        last = page[-1].seq


def audit_export_lines(header: dict[str, Any], filters: dict[str, Any], head_seq: int) -> Iterator[bytes]:
    digest = hashlib.sha256()
    count = 0

    def line(record: dict[str, Any]) -> bytes:
        nonlocal count
        data = (json.dumps(record, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()
        digest.update(data)
        count += 1
        return data

    yield line(header)
    covering: ChainCheckpoint | None = None
    for entry in _entries(filters, head_seq):
        if covering is None or covering.seq < entry.seq:
            covering = (ChainCheckpoint.objects.filter(chain=header["chain"], key_id=header["key_id"],
                                                       seq__gte=entry.seq).order_by("seq", "id").first())
            if covering is not None:
                yield line({"type": "checkpoint", "chain": covering.chain, "key_id": covering.key_id,
                            "seq": covering.seq, "head_mac": covering.head_mac, "created_at": covering.created_at,
                            "reason": covering.reason, "signature": covering.signature})
        fields = {"seq": entry.seq, "event_id": entry.event_id, "timestamp": entry.timestamp,
                  "event_type": entry.event_type, "actor": entry.actor, "model": entry.model,
                  "input_hash": entry.input_hash, "output_hash": entry.output_hash,
                  "input_tokens": entry.input_tokens, "output_tokens": entry.output_tokens,
                  "latency_ms": entry.latency_ms, "status": entry.status, "metadata": entry.metadata,
                  "error": entry.error, "subject_mac": entry.subject_mac}
        yield line({"type": "entry", "seq": entry.seq, "chained": chained_body(fields), "prev_mac": entry.prev_mac,
                    "mac": entry.mac, "redacted": entry.redacted_at is not None, "request_id": entry.request_id,
                    "checkpoint_seq": covering.seq if covering else None})
    trailer = {"type": "trailer", "lines": count, "sha256": digest.hexdigest()}
    yield (json.dumps(trailer, sort_keys=True) + "\n").encode()


@never_cache
@login_required
@require_GET
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if not request.user.has_perm(PERMISSION):
        return render(request, "audit/refused.html",
                      {"message": f"Exporting the audit trail needs the permission {PERMISSION}."}, status=403)
    form = ExportFilters(request.GET)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in form.errors.items())
        return render(request, "audit/refused.html", {"message": f"Bad filter ({problems})."}, status=400)
    filters = dict(form.cleaned_data)
    try:
        filters["actor"] = _actor(tenant_key(), filters)
    except ExportRefused as exc:
        return render(request, "audit/refused.html", {"message": exc.message}, status=exc.status)
    filters.pop("user")
    filters = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items()}
    header, head_seq = audit_export_start(request=request, filters=filters)
    response = StreamingHttpResponse(audit_export_lines(header, filters, head_seq),
                                     content_type="application/jsonl; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="atrium-audit-{header["chain"]}-{stamp}.jsonl"'
    return response
