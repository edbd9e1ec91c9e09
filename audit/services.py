"""Writing audit entries and consent records. Call inside the transaction of the change being recorded."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from audit import chain, queries
from audit.models import AuditEntry, Consent, Erasure, ProcessingNotice
from audit.rows import audit_rows, content_hash
from config.client_ip import client_ip
from config.tenant_cache import TenantCache

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User
    from django.http import HttpRequest

    from tenants.models import Tenant

logger = logging.getLogger(__name__)

# (user id, hash of the notice text) -> True: the user has accepted the current notice.
_consent_cache: TenantCache[bool] = TenantCache("consent")


def _client_ip(request: Any) -> str:
    return client_ip(request)  # X-Forwarded-For only from a trusted proxy (config/client_ip.py)


def _personal(user: Any, request: Any, tenant: Any = None) -> dict[str, Any]:
    personal: dict[str, Any] = {}
    if user is not None and getattr(user, "pk", None) is not None:
        personal["username"] = user.get_username()
    return {**personal, **request_personal(request, tenant)}


def tenant_key_of(tenant: Any) -> bytes:
    """The audit key of `tenant` (chain.tenant_key() as it reads with `tenant` active), without activating it:
    the tenant's row holds it. A call's records read it two or three times, and each read of `connection.tenant`
    (the check whether the tenant is active, then tenant_key's own) costs about 2 us in asgiref's Local."""
    key = getattr(tenant, "audit_key", None)
    if key:
        return str(key).encode()
    with tenant_context(tenant):
        return chain.tenant_key()


def request_personal(request: Any, tenant: Any = None) -> dict[str, Any]:
    """Session (as a keyed digest: under `tenant`'s audit key, else the active tenant's), IP address and user
    agent of a request: personal, hence redactable."""
    personal: dict[str, Any] = {}
    if request is not None:
        session = getattr(request, "session", None)
        session_key = getattr(session, "session_key", None) if session is not None else None
        if session_key:
            key = tenant_key_of(tenant) if tenant is not None else chain.tenant_key()
            personal["session_id"] = chain.keyed_hash(key, f"session:{session_key}")[:32]
        ip = _client_ip(request)
        if ip:
            personal["ip"] = ip
        agent = str(getattr(request, "META", {}).get("HTTP_USER_AGENT", ""))[:300]
        if agent:
            personal["user_agent"] = agent
    return personal


# The canonical texts of personal fields made of str values (a user's name, IP address, user agent, session
# digest: the same for each call of a client), by the fields' items. A key holding only str values is equal only to
# fields of equal str values (never to an int, a float or a bool), whose canonical text is the same.
_personal_texts: dict[tuple[tuple[str, str], ...], str] = {}
_PERSONAL_TEXTS_MAX = 4096


def personal_text(personal: dict[str, Any]) -> str:
    """chain.json_text(personal)[1], remembered for fields of str values (3.4 us a call made, 0.4 us found)."""
    try:
        key = tuple(personal.items())
        text = _personal_texts.get(key)
    except TypeError:  # an unhashable value: not remembered
        return chain.json_text(personal)[1]
    if text is None:
        text = chain.json_text(personal)[1]
        if all(type(name) is str and type(value) is str for name, value in key):
            if len(_personal_texts) >= _PERSONAL_TEXTS_MAX:
                _personal_texts.clear()
            _personal_texts[key] = text
    return text


@dataclass
class AuditEvent:
    """One entry to append, with everything taken from the request already resolved (so it can be written later,
    from another thread, in a batch: see audit_append)."""

    event_type: str
    user_id: int | None = None
    personal: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    input_payload: Any = None
    output_payload: Any = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    status: str = "success"
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    timestamp: datetime = field(default_factory=timezone.now)
    request_id: str = ""  # idempotency key: an event with a request id already in the chain is not written again
    # Keyed hashes of the payloads, when computed ahead (events_hash, for the local journal: no prompt on disk).
    input_hash: str | None = None
    output_hash: str | None = None
    # The canonical texts of the metadata (with the request id, as the entry stores it) and of the personal fields,
    # when made ahead (the journal line, inference.records.record_encode): audit.rows.audit_rows_json writes them
    # as they are.
    metadata_json: str | None = None
    personal_json: str | None = None

    def json_texts(self) -> tuple[str, str]:
        """(metadata_json, personal_json), made now if not made yet (chain.json_text, as audit_rows_json would)."""
        if self.metadata_json is None:
            metadata = dict(self.metadata or {})
            if self.request_id:
                metadata["request_id"] = self.request_id
            self.metadata_json = chain.json_text(metadata)[1]
        if self.personal_json is None:
            self.personal_json = personal_text(self.personal)
        return self.metadata_json, self.personal_json

    def hash_payloads(self, key: bytes) -> None:
        """Replace the payloads by their keyed hashes (under `key`, the tenant's audit key), in place: `hashed`
        without the copy, for an event nothing else holds. An event without payloads is left as it is."""
        if self.input_payload is None and self.output_payload is None:
            return
        if self.input_hash is None:
            self.input_hash = content_hash(key, self.input_payload)
        if self.output_hash is None:
            self.output_hash = content_hash(key, self.output_payload)
        self.input_payload = self.output_payload = None

    def hashed(self, key: bytes) -> AuditEvent:
        """This event with its payloads replaced by their keyed hashes (under `key`, the tenant's audit key)."""
        event = object.__new__(type(self))  # a shallow copy without __init__ (dataclasses.replace: 3x the CPU)
        event.__dict__.update(self.__dict__)
        event.input_hash = self.input_hash if self.input_hash is not None else content_hash(key, self.input_payload)
        event.output_hash = self.output_hash if self.output_hash is not None else content_hash(
            key, self.output_payload)
        event.input_payload = event.output_payload = None
        return event


@dataclass
class Appended:
    """What audit_append_once wrote, and which of the events' users are being erased (their events went in
    redacted; the caller's other writes for them must not link to them either)."""

    entries: list[AuditEntry]
    erased: frozenset[int]


def audit_event(*, event_type: str, user: User | AnonymousUser | None = None, request: HttpRequest | None = None,
                user_id: int | None = None, personal: dict[str, Any] | None = None, tenant: Any = None,
                **fields: Any) -> AuditEvent:
    """An AuditEvent for `user` and `request` (their personal fields read now, a session digested under
    `tenant`'s key when given, else the active tenant's); `fields` as AuditEvent's."""
    uid = user_id if user_id is not None else (getattr(user, "pk", None) if user is not None else None)
    personal_fields = personal if personal is not None else _personal(user, request, tenant)
    return AuditEvent(event_type=event_type, user_id=uid, personal=personal_fields, **fields)


def audit_record(*, event_type: str, user: User | AnonymousUser | None = None, request: HttpRequest | None = None,
                 user_id: int | None = None, personal: dict[str, Any] | None = None, **fields: Any) -> AuditEntry:
    """Append one entry to the current tenant's chain (inside the caller's transaction, if any)."""
    event = audit_event(event_type=event_type, user=user, request=request, user_id=user_id, personal=personal,
                        **fields)
    return audit_append([event])[0]


def audit_append(events: list[AuditEvent]) -> list[AuditEntry]:
    """Append entries to the current tenant's chain, in order, with one lock and one INSERT."""
    return audit_append_once(events).entries


def _already(events: list[AuditEvent]) -> tuple[set[str], frozenset[int]]:
    """Request ids of `events` already in the chain, and users of `events` whose erasure has started. Read after
    the chain lock: an erasure starts under the same lock (erasure_start), so it is either seen here or begins
    after this transaction, whose entries its redaction step then finds."""
    request_ids = [e.request_id for e in events if e.request_id]
    key = chain.tenant_key()
    refs = {chain.pseudonym(key, user_id): user_id for user_id in {e.user_id for e in events if e.user_id is not None}}
    if not request_ids and not refs:
        return set(), frozenset()
    with connection.cursor() as cursor:
        cursor.execute("SELECT request_id, NULL FROM audit_auditentry WHERE request_id = ANY(%s) "
                       "UNION ALL SELECT NULL, subject_ref FROM audit_erasure WHERE subject_ref = ANY(%s)",
                       [request_ids, list(refs)])
        rows = cursor.fetchall()
    return {str(r[0]) for r in rows if r[0] is not None}, frozenset(refs[str(r[1])] for r in rows if r[1] is not None)


def audit_append_once(events: list[AuditEvent]) -> Appended:
    """audit_append, idempotent by request id: an event whose request id is already in the chain is skipped.
    Events of a user whose erasure has started are written without their personal fields."""
    key = chain.tenant_key()
    # No savepoint: an append that fails must fail the change it records, and a savepoint costs two round trips.
    with transaction.atomic(savepoint=False):
        last_seq, prev = chain.chain_lock_head()
        present, erased = _already(events)
        rows = audit_rows(events, key=key, head=(last_seq, prev), present=present, erased=erased)
        entries = [AuditEntry(**row) for row in rows]
        AuditEntry.objects.bulk_create(entries)
    return Appended(entries=entries, erased=erased)


def erasure_start(user_id: int) -> bool:
    """Mark `user_id` as being erased, under the chain lock (see _already); True if newly marked. From here on
    the user's records are written redacted and usage counts anonymously."""
    with transaction.atomic():
        chain.chain_lock()
        _erasure, created = Erasure.objects.get_or_create(subject_ref=chain.pseudonym(chain.tenant_key(), user_id))
    return created


def audit_redact_batch(user_id: int, batch: int) -> int:
    """Blank the personal columns of up to `batch` of one user's entries; the chain still verifies."""
    return queries.entries_redact(user_id, batch)


# --- consent -----------------------------------------------------------------------------------------

def notice_current(tenant: Tenant) -> ProcessingNotice | None:
    """The newest published processing notice, or None when the tenant has no notice text. Only reads.

    Versions are published by `notice_publish` in the transaction that changes the tenant's notice, never by
    a read (GET /consent/, GET /chat/ or a model call). Should the text and the newest version ever disagree
    (a raw UPDATE of the tenant row), the newest version stays the one users accept: consent keeps being asked
    for, and the drift is logged for the operator.
    """
    text = (getattr(tenant, "processing_notice", "") or "").strip()
    if not text:
        return None
    latest = ProcessingNotice.objects.order_by("-version").first()
    if latest is None or latest.text != text:
        logger.warning("processing notice text differs from the newest published version",
                       extra={"tenant": getattr(tenant, "schema_name", "")})
    return latest


def notice_publish(tenant: Tenant) -> ProcessingNotice | None:
    """Publish the tenant's notice text as a new version (with its audit entry) when it differs from the newest.

    Called in the transaction that changes the policy (the tenant admin's policy page, provisioning, a platform
    edit), in the tenant's schema; idempotent, so calling it when nothing changed publishes nothing.
    """
    text = (getattr(tenant, "processing_notice", "") or "").strip()
    if not text:
        return None
    with transaction.atomic():
        chain.chain_lock()  # two concurrent edits publish one version each, numbered in order
        latest = ProcessingNotice.objects.order_by("-version").first()
        if latest is not None and latest.text == text:
            return latest
        notice = ProcessingNotice.objects.create(version=(latest.version + 1) if latest else 1, text=text)
        audit_record(event_type="notice_published", metadata={"version": notice.version})
        return notice


def consent_active(user: User, notice: ProcessingNotice) -> bool:
    return Consent.objects.filter(user=user, notice=notice, withdrawn_at__isnull=True).exists()


def consent_required(user: User, tenant: Tenant) -> ProcessingNotice | None:
    """The notice this user must accept before a model call, or None when nothing is pending.

    "Nothing pending" is remembered per process for this user and notice text (config/tenant_cache.py: the
    database announces every consent and notice change), so a model call does not pay two queries for it.
    """
    text = (getattr(tenant, "processing_notice", "") or "").strip()
    if not text:
        return None
    pending: list[ProcessingNotice] = []

    def settled() -> bool | None:
        notice = notice_current(tenant)
        if notice is None or consent_active(user, notice):
            return True
        pending.append(notice)
        return None

    if _consent_cache.get_or_load(tenant.schema_name, (user.pk, hash(text)), settled):
        return None
    return pending[0]


def consent_give(user: User, notice: ProcessingNotice, request: HttpRequest | None = None) -> Consent:
    with transaction.atomic():
        existing = Consent.objects.filter(user=user, notice=notice, withdrawn_at__isnull=True).first()
        if existing is not None:
            return existing
        consent = Consent.objects.create(user=user, notice=notice)
        audit_record(event_type="consent_given", user=user, request=request,
                     metadata={"notice_version": notice.version})
        return consent


def consent_withdraw(user: User, request: HttpRequest | None = None) -> int:
    with transaction.atomic():
        changed = Consent.objects.filter(user=user, withdrawn_at__isnull=True).update(withdrawn_at=timezone.now())
        if changed:
            audit_record(event_type="consent_withdrawn", user=user, request=request, metadata={"consents": changed})
        return changed


def audit_chain_check(*, user: User, request: HttpRequest | None = None) -> chain.VerifyResult:
    """Verify the tenant's chain and record that it was checked, by whom and with what outcome."""
    result = chain.chain_verify()
    with transaction.atomic():
        audit_record(event_type="audit_verified", user=user, request=request,
                     status="success" if result.ok else "error",
                     metadata={"entries": result.entries, "ok": result.ok, "broken_seq": result.broken_seq})
    return result
