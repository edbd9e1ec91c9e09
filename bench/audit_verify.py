"""Write N audit entries (default 1,000,000) into one tenant's chain, then time `manage.py verify_audit`.

Entries are generated with the same MAC code as audit.services.audit_record and loaded with COPY (writing a
million entries one transaction at a time would measure the writer, not the verifier).
Final line: {"entries": N, "verify_s": …}. Target: verify_s < 60 for 1M.

    .venv/bin/python bench/audit_verify.py [N]
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from _common import bench_database, bench_tenant, emit


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    bench_database("atrium_bench_audit")
    tenant = bench_tenant("audit")
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import tenant_context

    from audit import chain

    with tenant_context(tenant):
        key = chain.tenant_key()
        started = time.perf_counter()
        prev = chain.GENESIS
        now = datetime.now(UTC) - timedelta(days=1)
        columns = ("seq", "event_id", "timestamp", "event_type", "actor", "model", "input_hash", "output_hash",
                   "input_tokens", "output_tokens", "latency_ms", "status", "metadata", "error", "user_id",
                   "personal", "subject_mac", "prev_mac", "mac")
        with connection.cursor() as cursor, cursor.cursor.copy(
                f"COPY audit_auditentry ({', '.join(columns)}) FROM STDIN") as copy:
            for seq in range(1, count + 1):
                user_id = seq % 500 + 1
                personal = {"username": f"user{user_id}", "ip": "10.0.0.1"}
                metadata = {"provider": "anthropic", "attempts": [{"target": "anthropic", "outcome": "ok"}]}
                fields = {"seq": seq, "event_id": uuid.uuid4(), "timestamp": now + timedelta(microseconds=seq),
                          "event_type": "model_call", "actor": chain.pseudonym(key, user_id),
                          "model": "claude-sonnet-5-5", "input_hash": chain.keyed_hash(key, f"in{seq}"),
                          "output_hash": chain.keyed_hash(key, f"out{seq}"), "input_tokens": 10, "output_tokens": 20,
                          "latency_ms": 100, "status": "success", "metadata": metadata, "error": "",
                          "subject_mac": chain.subject_mac(key, user_id, personal)}
                mac = chain.entry_mac(key, prev, fields)
                copy.write_row([fields["seq"], fields["event_id"], fields["timestamp"], "model_call", fields["actor"],
                                fields["model"], fields["input_hash"], fields["output_hash"], 10, 20, 100, "success",
                                chain.canonical(metadata).decode(), "", user_id, chain.canonical(personal).decode(),
                                fields["subject_mac"], prev, mac])
                prev = mac
        print(f"wrote {count} entries in {time.perf_counter() - started:.1f}s", flush=True)
    connection.set_schema_to_public()
    started = time.perf_counter()
    call_command("verify_audit", tenant="audit")
    verify_s = time.perf_counter() - started
    emit({"entries": count, "verify_s": round(verify_s, 2)})


if __name__ == "__main__":
    main()
