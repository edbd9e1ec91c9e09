"""Audit entries as people read them in the compliance console: labelled details instead of the metadata's
Python/JSON form, and pseudonyms shown as the username while that user still exists.

Pseudonyms are one-way (HMAC of the user id under the tenant's audit key): to name one, the console computes the
pseudonym of each current user of the tenant, once per page and only when the page shows pseudonyms. A deleted
user's pseudonym stays a pseudonym, which is the point of the deletion.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model

from audit.chain import pseudonym, tenant_key
from audit.models import AuditEntry

_PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")
LABELS = {
    "job": "Job", "subject": "About user", "counts": "Counts", "source": "Source", "auth": "Signed in with",
    "provider": "Provider", "region": "Region", "provider_model": "Provider model", "attempts": "Attempts",
    "max_tokens_requested": "Max tokens asked", "max_tokens_granted": "Max tokens granted",
    "clamp_reason": "Clamped because", "request_id": "Request id", "reason": "Reason", "method": "Method",
    "added": "Roles added", "removed": "Roles removed", "fields": "Fields changed", "prefix": "Key prefix",
    "version": "Notice version", "size": "Size (bytes)", "cutoff": "Cutoff", "result": "Result",
    "retention_days": "Retention (days)", "account": "Account", "trace_id": "Trace id",
}

FIRST = ["provider", "region", "model", "status", "error", "conversations", "messages"]


def _pseudonyms_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value} if _PSEUDONYM.match(value) else set()
    if isinstance(value, dict):
        return set().union(*(_pseudonyms_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_pseudonyms_in(v) for v in value)) if value else set()
    return set()


def names_for(entries: Iterable[AuditEntry]) -> dict[str, str]:
    """pseudonym -> username, for the pseudonyms these entries mention whose users still exist."""
    wanted: set[str] = set()
    for entry in entries:
        wanted |= _pseudonyms_in(entry.actor) | _pseudonyms_in(entry.metadata)
    return names_for_refs(wanted)


def names_for_refs(refs: Iterable[str]) -> dict[str, str]:
    wanted = {r for r in refs if r and _PSEUDONYM.match(r)}
    if not wanted:
        return {}
    key = tenant_key()
    names: dict[str, str] = {}
    for pk, username in get_user_model().objects.values_list("pk", "username").iterator(chunk_size=2000):
        ref = pseudonym(key, pk)
        if ref in wanted:
            names[ref] = username
            if len(names) == len(wanted):
                break
    return names


def _label(key: str) -> str:
    return LABELS.get(key) or key.replace("_", " ").capitalize()


def _text(value: Any, names: dict[str, str]) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if _PSEUDONYM.match(value):
            return names.get(value) or f"pseudonym {value[:12]}"
        return value
    if isinstance(value, dict):  # jsonb keeps no key order: a fixed one, so rows read alike
        keys = sorted(value, key=lambda k: (FIRST.index(k) if k in FIRST else len(FIRST), str(k)))
        return ", ".join(f"{_label(str(k)).lower()} {_text(value[k], names)}" for k in keys) or "—"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return "; ".join(_text(v, names) for v in value)
        return ", ".join(_text(v, names) for v in value) or "—"
    return str(value)


def entry_details(entry: AuditEntry, names: dict[str, str]) -> list[tuple[str, str]]:
    """(label, text) pairs of the entry's metadata (known keys in LABELS' order, then the rest by name), latency
    and error."""
    metadata = entry.metadata or {}
    keys = sorted(metadata, key=lambda k: (list(LABELS).index(k) if k in LABELS else len(LABELS), str(k)))
    details = [(_label(str(key)), _text(metadata[key], names)) for key in keys]
    if entry.latency_ms:
        details.append(("Latency", f"{entry.latency_ms} ms"))
    if entry.error:
        details.append(("Error", entry.error))
    return details
