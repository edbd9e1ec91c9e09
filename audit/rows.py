"""The rows of an append to a tenant's audit chain: each entry's sequence number, MACs and column values, made from
canonical texts serialised once (audit.services.audit_append_once inserts them as model instances; the record
writer, inference.record_tx, sends them as one JSON array)."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from audit import chain
from config.ids import uuid4_text
from config.stored_text import stored, stored_text

if TYPE_CHECKING:
    from audit.services import AuditEvent


def content_hash(key: bytes, payload: Any) -> str:
    """HMAC-SHA-256 of a prompt or completion: proves what was sent without storing it."""
    if payload is None or payload == "":
        return ""
    if isinstance(payload, str):
        return chain.keyed_hash(key, payload)
    return chain.mac_hex(key, chain.canonical_fast_bytes(payload))  # the canonical text's UTF-8, made once


class _Chained:
    """One entry of an append, chained: its column values, and the canonical texts its MACs were made of."""

    __slots__ = ("actor", "error", "event", "event_id", "input_hash", "mac", "metadata", "metadata_text", "output_hash",
                 "personal", "personal_text", "prev_mac", "row", "seq", "subject_mac", "timestamp", "user_id")
    event: AuditEvent
    seq: int
    event_id: str
    timestamp: str
    actor: str
    input_hash: str
    output_hash: str
    error: str
    user_id: int | None
    personal: Any
    personal_text: str
    metadata: Any
    metadata_text: str
    subject_mac: str
    prev_mac: str
    mac: str
    row: str  # the row as JSON (audit_rows_json)


# The subject MACs of recent (key, user, personal text): a client's calls share them (an HMAC each, 2.9 us).
_subject_macs: dict[tuple[bytes, int | None, str], str] = {}
_SUBJECT_MACS_MAX = 4096


def _subject_mac(key: bytes, user_id: int | None, personal_text: str) -> str:
    """chain.subject_mac_text, remembered (a pure function of its arguments)."""
    mac = _subject_macs.get((key, user_id, personal_text))
    if mac is None:
        mac = chain.subject_mac_text(key, user_id, personal_text)
        if len(_subject_macs) >= _SUBJECT_MACS_MAX:
            _subject_macs.clear()
        _subject_macs[(key, user_id, personal_text)] = mac
    return mac


_quote = json.encoder.encode_basestring  # what canonical JSON writes for a str (ensure_ascii=False)


def _text(value: Any) -> str:
    """chain.canonical_text(value); the usual str and int without the encoder."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    return chain.canonical_text(value)


def _chained(events: list[AuditEvent], *, key: bytes, head: tuple[int, str], present: set[str],
             erased: frozenset[int], made: bool = False) -> list[_Chained]:
    """The entries that append `events` after the chain's `head` (seq, mac), each MAC over the canonical text of
    its chained fields (audit.chain.chained_body; the same bytes, assembled from texts each made once: the
    metadata and personal fields are serialised once, for both MACs and the row). An event holding a NUL or a lone
    surrogate (a client's User-Agent, a provider's error text) is chained as it is stored: those characters made
    U+FFFD (config.stored_text), so that PostgreSQL takes the row and its MACs verify."""
    last_seq, prev = head
    present = set(present)
    out: list[_Chained] = []
    for event in events:
        request_id = event.request_id
        if request_id:
            if request_id in present:
                continue
            present.add(request_id)
        entry: _Chained | None
        try:
            entry = _entry(event, key, last_seq + 1, prev, erased, made)
        except UnicodeEncodeError:  # a lone surrogate: it has no UTF-8 for the MAC's bytes
            entry = None
        # NUL is written `\u0000` in the row's JSON, which jsonb refuses (a text column refuses NUL itself); a row
        # without a backslash holds no escape at all (one memchr, 0.03 us, where the search costs 0.3 us)
        if entry is None or ("\\" in entry.row and "\\u0000" in entry.row):
            entry = _entry(_stored_event(event), key, last_seq + 1, prev, erased, made)
        last_seq, prev = entry.seq, entry.mac
        out.append(entry)
    return out


def _stored_event(event: AuditEvent) -> AuditEvent:
    """`event` with its texts as they can be stored (config.stored_text); its canonical texts made again."""
    copy = object.__new__(type(event))  # a shallow copy, as AuditEvent.hashed makes
    copy.__dict__.update(event.__dict__)
    copy.event_type, copy.model = stored_text(event.event_type), stored_text(event.model or "")
    copy.status, copy.error = stored_text(event.status), stored_text(event.error or "")
    copy.metadata, copy.personal = stored(event.metadata), stored(event.personal)
    copy.metadata_json = copy.personal_json = None
    return copy


def _entry(event: AuditEvent, key: bytes, seq: int, prev: str, erased: frozenset[int], made: bool) -> _Chained:
    """The entry `seq` of `event`, chained after the MAC `prev`."""
    request_id = event.request_id
    entry = _Chained()
    entry.event = event
    if event.user_id in erased:
        entry.user_id, entry.personal, entry.personal_text = None, {}, "{}"
    elif made and event.personal_json is not None:  # the text only (audit_rows_json)
        entry.user_id, entry.personal, entry.personal_text = event.user_id, event.personal, event.personal_json
    else:
        entry.user_id = event.user_id
        entry.personal, entry.personal_text = chain.json_text(event.personal)
    if made and event.metadata_json is not None:
        entry.metadata, entry.metadata_text = event.metadata, event.metadata_json
    else:
        metadata = dict(event.metadata or {})
        if request_id:
            metadata["request_id"] = request_id
        entry.metadata, entry.metadata_text = chain.json_text(metadata)
    entry.seq = seq
    entry.event_id = uuid4_text()
    entry.timestamp = chain.timestamp_text(event.timestamp)
    entry.actor = chain.pseudonym(key, event.user_id)  # the pseudonym survives erasure
    entry.input_hash = event.input_hash if event.input_hash is not None else content_hash(key, event.input_payload)
    entry.output_hash = event.output_hash if event.output_hash is not None else content_hash(
        key, event.output_payload)
    entry.error = (event.error or "")[:2000]
    entry.subject_mac = _subject_mac(key, entry.user_id, entry.personal_text)
    # Each value's canonical text made once, for the MAC's body and for the row. The pseudonym, the event id,
    # the time and the MACs are hex digits and ISO digits: nothing in them to escape.
    event_type, model, status = _text(event.event_type), _text(event.model or ""), _text(event.status)
    input_hash, output_hash, error = _text(entry.input_hash), _text(entry.output_hash), _text(entry.error)
    counts = (f'"input_tokens":{int(event.input_tokens or 0)},"output_tokens":{int(event.output_tokens or 0)},'
              f'"latency_ms":{int(event.latency_ms or 0)}')
    # canonical(chained_body(fields)): the chained fields in sorted order
    body = (f'{{"actor":"{entry.actor}","error":{error},"event_id":"{entry.event_id}","event_type":{event_type},'
            f'"input_hash":{input_hash},"input_tokens":{int(event.input_tokens or 0)},'
            f'"latency_ms":{int(event.latency_ms or 0)},"metadata":{entry.metadata_text},"model":{model},'
            f'"output_hash":{output_hash},"output_tokens":{int(event.output_tokens or 0)},"seq":{seq},'
            f'"status":{status},"subject_mac":"{entry.subject_mac}","timestamp":"{entry.timestamp}"}}')
    entry.prev_mac = prev
    entry.mac = mac = chain.mac_hex(key, prev.encode() + body.encode())
    entry.row = (f'{{"seq":{seq},"event_id":"{entry.event_id}","timestamp":"{entry.timestamp}",'
                 f'"event_type":{event_type},"actor":"{entry.actor}","model":{model},"input_hash":{input_hash},'
                 f'"output_hash":{output_hash},{counts},"status":{status},"metadata":{entry.metadata_text},'
                 f'"error":{error},"subject_mac":"{entry.subject_mac}","user_id":{_text(entry.user_id)},'
                 f'"personal":{entry.personal_text},"request_id":{_text(request_id or None)},'
                 f'"prev_mac":{_text(prev)},"mac":"{mac}"}}')
    return entry


def audit_rows(events: list[AuditEvent], *, key: bytes, head: tuple[int, str], present: set[str],
               erased: frozenset[int]) -> list[dict[str, Any]]:
    """The audit_auditentry rows (column -> value) that append `events` after the chain's `head` (seq, mac):
    events whose request id is in `present` are skipped, those of users in `erased` written redacted. Pure: the
    caller holds the chain lock (audit_append_once)."""
    return [{"seq": e.seq, "event_id": uuid.UUID(e.event_id), "timestamp": e.event.timestamp,
             "event_type": e.event.event_type, "actor": e.actor, "model": e.event.model or "",
             "input_hash": e.input_hash, "output_hash": e.output_hash, "input_tokens": int(e.event.input_tokens or 0),
             "output_tokens": int(e.event.output_tokens or 0), "latency_ms": int(e.event.latency_ms or 0),
             "status": e.event.status, "metadata": e.metadata, "error": e.error, "subject_mac": e.subject_mac,
             "user_id": e.user_id, "personal": e.personal, "prev_mac": e.prev_mac, "mac": e.mac,
             "request_id": e.event.request_id or None}
            for e in _chained(events, key=key, head=head, present=present, erased=erased)]


def audit_rows_json(events: list[AuditEvent], *, key: bytes, head: tuple[int, str], present: set[str],
                    erased: frozenset[int]) -> tuple[str, int, tuple[int, str]]:
    """audit_rows as one JSON array (the rows' columns; the metadata and personal fields as the very texts their
    MACs covered), for jsonb_populate_recordset (inference.record_tx); how many rows it holds; the chain's head
    (seq, mac) once they are appended."""
    entries = _chained(events, key=key, head=head, present=present, erased=erased, made=True)
    if entries:
        head = (entries[-1].seq, entries[-1].mac)
    return f"[{','.join(e.row for e in entries)}]", len(entries), head
