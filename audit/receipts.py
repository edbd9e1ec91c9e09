"""Deletion receipts as documents: a standalone HTML page compliance staff can file or hand over, signed so that a
changed copy is detected.

The signed part is the receipt's data as canonical JSON (sorted keys, UTF-8), printed inside the document; the
signature is HMAC-SHA-256 under a key derived from ATRIUM_AUDIT_CHECKPOINT_KEY (never stored in the database, so
database access alone cannot forge a receipt). The data names the `deletion_completed` audit entry (sequence and
MAC), which the audit chain and its checkpoints cover. `manage.py verify_receipt FILE` checks a downloaded copy.
The receipt holds no personal data: the subject and the requester appear as their pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from typing import Any

from django.db import connection
from django.template.loader import render_to_string

from audit.models import AuditEntry, DeletionReceipt
from audit.platform.checkpoints import checkpoint_key
from audit.verify import canonical

RECEIPT_FORMAT = "atrium-deletion-receipt"
_DATA = re.compile(r'<pre id="receipt-data">(.*?)</pre>', re.S)
_SIGNATURE = re.compile(r'<code id="receipt-signature">([0-9a-f]{64})</code>')


def _key() -> bytes:
    return hmac.new(checkpoint_key(), b"atrium-deletion-receipt-v1", hashlib.sha256).digest()


def receipt_signature(data: dict[str, Any]) -> str:
    return hmac.new(_key(), canonical(data), hashlib.sha256).hexdigest()


def receipt_data(receipt: DeletionReceipt) -> dict[str, Any]:
    """What the receipt states (and its signature covers)."""
    entry = (AuditEntry.objects.filter(event_type="deletion_completed", metadata__job=str(receipt.job_id))
             .order_by("seq").values("seq", "mac", "timestamp").first())
    tenant = getattr(connection, "tenant", None)
    return {
        "format": RECEIPT_FORMAT, "version": 1,
        "organisation": getattr(tenant, "name", "") or "", "tenant": connection.schema_name,  # type: ignore[attr-defined]
        "job": str(receipt.job_id), "subject": receipt.subject_ref, "requested_by": receipt.requested_by_ref,
        "requested_at": receipt.requested_at.isoformat(), "completed_at": receipt.completed_at.isoformat(),
        "deleted": {k: int(v) for k, v in sorted((receipt.counts or {}).items())},
        "account": receipt.account_action,
        "audit_entry": {"seq": entry["seq"], "mac": entry["mac"], "timestamp": entry["timestamp"].isoformat()}
        if entry else None,
    }


def receipt_document(receipt: DeletionReceipt) -> str:
    """The signed, standalone HTML document."""
    data = receipt_data(receipt)
    return render_to_string("audit/receipt_document.html", {
        "receipt": receipt, "data": data, "signature": receipt_signature(data),
        "data_json": json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False)})


def receipt_verify(document: str) -> tuple[bool, str]:
    """(valid, what was checked) for a downloaded receipt document."""
    found, signed = _DATA.search(document), _SIGNATURE.search(document)
    if found is None or signed is None:
        return False, "not an Atrium deletion receipt (no signed data or signature found)"
    try:
        data = json.loads(html.unescape(found.group(1)))
    except json.JSONDecodeError:
        return False, "the receipt's data is not valid JSON: the document was changed"
    if data.get("format") != RECEIPT_FORMAT:
        return False, "not an Atrium deletion receipt"
    if not hmac.compare_digest(receipt_signature(data), signed.group(1)):
        return False, "the signature does not match: the receipt was changed or signed with another key"
    return True, f"valid receipt of deletion job {data['job']} completed {data['completed_at']}"
