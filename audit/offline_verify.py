"""Verify an audit export (JSON Lines, audit/export.py) offline: no database, no Django, only the keys.

    python -m audit.offline_verify FILE --key TENANT_AUDIT_KEY --checkpoint-key CHECKPOINT_KEY

Checks: every entry's MAC against its content and previous MAC (tenant key); consecutive entries link; every
checkpoint's signature (checkpoint key) and that it belongs to this chain (key fingerprint); each entry's covering
checkpoint exists and is at or after it; an entry at a checkpoint's sequence has exactly the checkpointed MAC; the
export's own trailer (line count and the digest of every line before it). Exit 0 and one "ok" line, or exit 1 and
one line per problem, naming the line and the entry.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
from typing import Any

from audit.verify import checkpoint_signed_body, entry_mac_of, key_fingerprint, request_id_problem


def verify_lines(lines: list[bytes], key: bytes, checkpoint_key: bytes) -> tuple[int, list[str]]:
    """(entries checked, problems) for the lines of an export."""
    problems: list[str] = []
    digest = hashlib.sha256()
    header: dict[str, Any] | None = None
    checkpoints: dict[int, dict[str, Any]] = {}
    entries: list[tuple[int, dict[str, Any]]] = []
    trailer: dict[str, Any] | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            kind = record["type"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"line {number}: not a JSON export record")
            continue
        if kind == "trailer":
            trailer = record
            trailer_line = number
            break
        digest.update(raw.rstrip(b"\r") + b"\n")
        if kind == "header":
            header = record
        elif kind == "checkpoint":
            checkpoints[int(record["seq"])] = {**record, "_line": number}
        elif kind == "entry":
            entries.append((number, record))
        else:
            problems.append(f"line {number}: unknown record type {kind!r}")
    if header is None:
        problems.append("no header line: not an Atrium audit export")
        return 0, problems
    key_id = key_fingerprint(key)
    if header.get("key_id") != key_id:
        problems.append(f"the key given is not this chain's key (export key id {header.get('key_id')}, "
                        f"key given {key_id})")
        return 0, problems
    if trailer is None:
        problems.append("no trailer line: the export is cut short (lines deleted at the end)")
    else:
        if int(trailer.get("lines", -1)) != trailer_line - 1:
            problems.append(f"trailer says {trailer.get('lines')} lines before it, found {trailer_line - 1} "
                            f"(lines added or deleted)")
        if trailer.get("sha256") != digest.hexdigest():
            problems.append("trailer digest does not match the lines before it (lines edited, added, deleted or "
                            "reordered)")
    for seq, checkpoint in checkpoints.items():
        line = checkpoint["_line"]
        body = {k: checkpoint[k] for k in ("chain", "key_id", "seq", "head_mac", "created_at")}
        expected = hmac.new(checkpoint_key, checkpoint_signed_body(body), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(checkpoint.get("signature", ""))):
            problems.append(f"line {line}: checkpoint of head #{seq} has an invalid signature (forged or edited, "
                            f"or the wrong checkpoint key)")
        elif checkpoint["key_id"] != key_id:
            problems.append(f"line {line}: checkpoint of head #{seq} belongs to another chain")
    previous: dict[str, Any] | None = None
    for line, entry in entries:
        seq = int(entry["seq"])
        body = entry["chained"]
        if int(body.get("seq", -1)) != seq:
            problems.append(f"line {line}: entry #{seq} carries sequence {body.get('seq')} in its content (edited)")
        if not hmac.compare_digest(entry_mac_of(key, str(entry["prev_mac"]), body), str(entry["mac"])):
            problems.append(f"line {line}: entry #{seq}: MAC does not match its content (edited or forged)")
        mismatch = request_id_problem(entry.get("request_id"), body.get("metadata"))
        if mismatch:
            problems.append(f"line {line}: entry #{seq}: {mismatch}")
        if previous is not None:
            if seq <= int(previous["seq"]):
                problems.append(f"line {line}: entry #{seq} comes after entry #{previous['seq']} (reordered)")
            elif seq == int(previous["seq"]) + 1 and entry["prev_mac"] != previous["mac"]:
                problems.append(f"line {line}: entry #{seq} does not link to entry #{previous['seq']} "
                                f"(inserted or replaced)")
        covering = entry.get("checkpoint_seq")
        if covering is None or int(covering) not in checkpoints:
            problems.append(f"line {line}: entry #{seq} names no checkpoint of this export")
        elif int(covering) < seq:
            problems.append(f"line {line}: entry #{seq} is after its checkpoint #{covering}")
        if seq in checkpoints and checkpoints[seq]["head_mac"] != entry["mac"]:
            problems.append(f"line {line}: entry #{seq} does not match the signed checkpoint of that head "
                            f"(rewritten)")
        previous = entry
    return len(entries), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.offline_verify",
                                     description="Verify an Atrium audit export offline.")
    parser.add_argument("file", help="the .jsonl export")
    parser.add_argument("--key", required=True, help="the tenant's audit key (manage.py audit_key --tenant SLUG)")
    parser.add_argument("--checkpoint-key", required=True, help="ATRIUM_AUDIT_CHECKPOINT_KEY")
    args = parser.parse_args(argv)
    try:
        with open(args.file, "rb") as handle:
            lines = handle.read().split(b"\n")
    except OSError as exc:
        print(f"offline_verify: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    count, problems = verify_lines(lines, args.key.encode(), args.checkpoint_key.encode())
    if problems:
        for problem in problems:
            print(f"FAILED: {problem}", file=sys.stderr)
        return 1
    print(f"ok: {count} entries, every MAC, link and checkpoint signature verifies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
