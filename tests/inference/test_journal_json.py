"""The journal line written by orjson (config.jsonfast, inference.records.record_encode) decodes to the same record
as the line json wrote, whatever the text: non-ASCII, control characters, U+2028, an integer beyond 64 bits; and a
line of either kind replays."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest

from tests.inference.test_recorder_writes import _record

pytestmark = pytest.mark.django_db


def _json_line(record: Any) -> str:
    """record_encode as it was, with json (separators, default=str, ASCII escapes)."""
    from inference import records

    line = records.record_encode(record)
    return json.dumps(json.loads(line), separators=(",", ":"), default=str)


def _fields(record: Any) -> dict[str, Any]:
    return {"tenant": record.tenant.schema_name, "request_id": record.request_id,
            **{name: dataclasses.asdict(getattr(record, name)) if getattr(record, name) is not None else None
               for name in ("usage", "audit", "reservation", "budget")},
            "used_tokens": record.used_tokens, "settle": record.settle}


@pytest.mark.parametrize("big", [False, True])
def test_a_journal_line_decodes_as_the_json_line_did(big: bool, in_tenant: Any, tenant_a: Any,
                                                       make_user: Any) -> None:
    """UTF-8 text where orjson writes the line; json's own line (ASCII escapes) where orjson refuses a value (an
    integer beyond 64 bits): the same record either way, and it writes."""
    from inference.records import record_decode, record_encode, records_write

    user = make_user(tenant_a)
    record = _record(tenant_a, user.pk, f"req_{uuid.uuid4().hex}")
    record.usage = dataclasses.replace(record.usage, model="claude-h\u00e4iku \u2028 \U0001f600")
    record.audit.error = "\u00e9\x01\x1f\x7f \"quoted\" \\ \u2028\u2029 \U0001f600"
    record.audit.metadata = {"attempts": [{"ms": 1.5e-05, "big": 2**70, "t": "\u00fc"}], "n": 1e16}
    if big:
        record.used_tokens = 2**70
    with in_tenant(tenant_a):
        line = record_encode(record)
        from inference.records import record_line

        assert record_line(record) == line.encode()  # what the journal writes: the line's UTF-8, made once
    old = _json_line(record)
    assert "\\u00e9" in old
    if big:
        assert "\\u00e9" in line  # json wrote it, as before (the canonical texts go in as they are)
    else:
        assert "\\u00e9" not in line and "\u00e9" in line  # UTF-8 text, not escapes
    from inference.journal_lines import journal_line, journal_records

    assert journal_records(journal_line(3, line) + journal_line(3, old)) == ([line, old], 0)  # U+2028 is no LF
    ours, theirs = record_decode(line), record_decode(old)
    assert _fields(ours) == _fields(theirs)
    assert ours.used_tokens == record.used_tokens and type(ours.used_tokens) is int
    assert ours.audit.error == record.audit.error and ours.usage.model == record.usage.model
    ours.used_tokens = 30
    assert records_write([ours]) == []
