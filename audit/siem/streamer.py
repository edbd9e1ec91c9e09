"""The streamer: sends each destination the entries of its chain it has not acknowledged, in sequence order.

For each (destination, chain) a cursor row (audit_platform.SiemCursor) holds the last acknowledged sequence number.
One batch is one transaction: lock the cursor row (SELECT … FOR UPDATE SKIP LOCKED: a second streamer skips a
destination being streamed instead of waiting or sending twice), read the entries after it, deliver them, and only
once the receiver acknowledged move the cursor and commit. A crash between the acknowledgement and the commit sends
the same entries again next time, with the same ids: at-least-once on the wire, exactly-once by id.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from psycopg import sql

from audit import queries
from audit.chain import CHAINED, chained_body
from audit.platform.chain import CHAINED as PLATFORM_CHAINED
from audit.platform.chain import platform_key
from audit.platform.checkpoints import PLATFORM, chain_key_id
from audit.platform.models import SiemCursor, SiemDestination
from audit.siem.transports import DeliveryFailed, Target, deliver, url_problem
from audit.siem.wire import WireEntry

logger = logging.getLogger("atrium.audit.siem")

TENANT_COLUMNS = (*CHAINED, "prev_mac", "mac", "redacted_at", "request_id")
PLATFORM_COLUMNS = (*PLATFORM_CHAINED, "prev_mac", "mac")
OPERATOR = "operator (ATRIUM_SIEM_URL)"


@dataclass(frozen=True)
class Route:
    """One destination and the one chain it receives."""

    destination_id: uuid.UUID | None  # None: the operator's destination (settings)
    name: str
    chain: str
    target: Target
    backfill: bool


@dataclass(frozen=True)
class Chain:
    name: str
    key_id: str
    table: sql.Composable
    columns: tuple[str, ...]


@dataclass(frozen=True)
class StreamResult:
    sent: int = 0
    skipped: bool = False  # another streamer holds the destination, or it is waiting after a failure
    failed: bool = False


def chain_of(name: str) -> Chain:
    if name == PLATFORM:
        return Chain(PLATFORM, chain_key_id(platform_key()), queries.platform_table(), PLATFORM_COLUMNS)
    from tenants.models import Tenant

    key = Tenant.objects.filter(schema_name=name).values_list("audit_key", flat=True).get()
    return Chain(name, chain_key_id(str(key).encode()), sql.Identifier(name, queries.TENANT_TABLE), TENANT_COLUMNS)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def wire_entry(chain: Chain, row: dict[str, Any]) -> WireEntry:
    if chain.name == PLATFORM:
        body = {name: row[name] for name in PLATFORM_CHAINED}
        body["event_id"] = str(body["event_id"])
        body["timestamp"] = row["timestamp"].isoformat(timespec="microseconds")
        body["metadata"] = _json(body["metadata"])
        event_type, status, extra = str(row["action"]), "success", {}
    else:
        fields = {name: row[name] for name in CHAINED}
        fields["metadata"] = _json(fields["metadata"])
        body = chained_body(fields)
        event_type, status = str(row["event_type"]), str(row["status"])
        extra = {"redacted": row["redacted_at"] is not None, "request_id": row["request_id"]}
    return WireEntry(chain=chain.name, key_id=chain.key_id, seq=int(row["seq"]), mac=str(row["mac"]),
                     prev_mac=str(row["prev_mac"]), timestamp=row["timestamp"], event_type=event_type, status=status,
                     chained=body, extra=extra)


def routes() -> list[Route]:
    """Every enabled destination of the platform admin, then the operator's for every chain."""
    found = [Route(d.id, d.name, d.chain, Target(url=d.url, secret=str(d.secret or ""), ca_pem=d.ca_bundle,
                                                   verify_tls=d.verify_tls), d.backfill)
             for d in SiemDestination.objects.filter(enabled=True).select_related("tenant").order_by("created_at")]
    url = str(settings.ATRIUM_SIEM_URL or "")
    if url:
        problem = url_problem(url)
        if problem:
            logger.error("ATRIUM_SIEM_URL is not usable (%s); the operator's SIEM receives nothing", problem)
            return found
        from tenants.models import Tenant

        target = Target(url=url, secret=settings.ATRIUM_SIEM_SECRET, ca_file=settings.ATRIUM_SIEM_CA_FILE,
                        verify_tls=settings.ATRIUM_SIEM_VERIFY_TLS, trusted=True)
        chains = [PLATFORM, *Tenant.objects.exclude(schema_name=PLATFORM).order_by("schema_name")
                  .values_list("schema_name", flat=True)]
        # A deleted tenant's trail is gone: so is the operator's cursor on it (a destination's goes with its row).
        SiemCursor.objects.filter(destination=None).exclude(chain__in=chains).delete()
        found += [Route(None, OPERATOR, chain, target, settings.ATRIUM_SIEM_BACKFILL) for chain in chains]
    return found


def _head(chain: Chain) -> int:
    head = queries.chain_head(chain.table)
    return head[0] if head else 0


def cursor_ensure(*, destination_id: uuid.UUID | None, chain: Chain, backfill: bool) -> int:
    """The cursor row of (destination, chain), created at the chain's start (backfill) or its head; its pk."""
    found = SiemCursor.objects.filter(destination_id=destination_id, chain=chain.name).values_list("pk", flat=True)
    pk = found.first()
    if pk is not None:
        return int(pk)
    head = _head(chain)
    try:
        with transaction.atomic():
            return int(SiemCursor.objects.create(destination_id=destination_id, chain=chain.name, key_id=chain.key_id,
                                                 last_seq=0 if backfill else head, head_seq=head).pk)
    except IntegrityError:  # another streamer created it first
        return int(found.get())


def _contiguous(after: int, entries: list[WireEntry]) -> list[WireEntry]:
    """The entries that follow `after` without a gap (a chain's sequence numbers are contiguous from 1)."""
    run: list[WireEntry] = []
    for entry in entries:
        if entry.seq != after + len(run) + 1:
            break
        run.append(entry)
    return run


def _failed(route: Route, cursor: SiemCursor, message: str, now: datetime, first: int, last: int) -> None:
    cursor.failures += 1
    delay = min(float(settings.ATRIUM_SIEM_INTERVAL_S) * 2 ** min(cursor.failures - 1, 16),
                float(settings.ATRIUM_SIEM_FAILURE_BACKOFF_MAX_S))
    cursor.next_attempt_at = now + timedelta(seconds=delay)
    cursor.last_error, cursor.last_error_at = message[:300], now
    cursor.save(update_fields=["failures", "next_attempt_at", "last_error", "last_error_at", "head_seq"])
    # Ids and counts only: never an entry's content.
    logger.warning("SIEM delivery to %s failed for chain %s (entries #%d-#%d, %d consecutive failures, next attempt "
                   "in %.0f s): %s", route.name, route.chain, first, last, cursor.failures, delay, message)


def stream_route(route: Route) -> StreamResult:
    """Send `route`'s chain to its destination up to ATRIUM_SIEM_MAX_BATCHES batches, or until caught up."""
    chain = chain_of(route.chain)
    pk = cursor_ensure(destination_id=route.destination_id, chain=chain, backfill=route.backfill)
    batch = int(settings.ATRIUM_SIEM_BATCH)
    sent = 0
    for _ in range(int(settings.ATRIUM_SIEM_MAX_BATCHES)):
        with transaction.atomic():
            cursor = SiemCursor.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
            now = timezone.now()
            if cursor is None or (cursor.next_attempt_at is not None and cursor.next_attempt_at > now):
                return StreamResult(sent=sent, skipped=True)
            if cursor.key_id != chain.key_id:  # a new chain under an old name (tenant re-created)
                logger.warning("SIEM cursor of %s for chain %s restarts: the chain's key changed", route.name,
                               route.chain)
                cursor.key_id, cursor.last_seq = chain.key_id, 0 if route.backfill else _head(chain)
                cursor.save(update_fields=["key_id", "last_seq"])
            rows = queries.chain_entries(chain.table, chain.columns, after_seq=cursor.last_seq, limit=batch)
            entries = _contiguous(cursor.last_seq, [wire_entry(chain, row) for row in rows])
            cursor.head_seq = max(_head(chain), rows[-1]["seq"] if rows else 0)
            if not rows and cursor.head_seq < cursor.last_seq:  # entries the SIEM holds are gone from the chain
                _failed(route, cursor, f"the chain's head #{cursor.head_seq} is behind the last entry sent "
                        f"#{cursor.last_seq} (entries deleted? run manage.py verify_audit)", now, cursor.head_seq + 1,
                        cursor.last_seq)
                return StreamResult(sent=sent, failed=True)
            if not rows:
                cursor.caught_up_at = now
                cursor.save(update_fields=["head_seq", "caught_up_at"])
                return StreamResult(sent=sent)
            if not entries:
                _failed(route, cursor, f"gap in the chain after #{cursor.last_seq} (run manage.py verify_audit)",
                        now, cursor.last_seq + 1, int(rows[0]["seq"]))
                return StreamResult(sent=sent, failed=True)
            try:
                deliver(route.target, chain.name, entries)
            except DeliveryFailed as exc:
                _failed(route, cursor, exc.message, now, entries[0].seq, entries[-1].seq)
                return StreamResult(sent=sent, failed=True)
            cursor.last_seq = entries[-1].seq
            cursor.failures, cursor.next_attempt_at, cursor.delivered_at = 0, None, timezone.now()
            if cursor.last_seq >= cursor.head_seq:
                cursor.caught_up_at = cursor.delivered_at
            cursor.save(update_fields=["last_seq", "failures", "next_attempt_at", "delivered_at", "caught_up_at",
                                       "head_seq"])
        sent += len(entries)
        if len(entries) < batch:
            break
    return StreamResult(sent=sent)


def _table(chain: str) -> sql.Composable:
    return queries.platform_table() if chain == PLATFORM else sql.Identifier(chain, queries.TENANT_TABLE)


def siem_stream_all() -> int:
    """Stream every route once (the beat task); the number of entries acknowledged.

    The heads of every chain are read in one query and the cursors in another: a route whose cursor stands at its
    chain's head is only marked caught up (one UPDATE for all of them), so an idle run costs a few queries however
    many tenants there are. A head behind its cursor (a chain re-created under an old name) takes the full path,
    which notices the new key.
    """
    every = routes()
    heads = queries.chain_heads({chain: _table(chain) for chain in {route.chain for route in every}})
    cursors: dict[tuple[uuid.UUID | None, str], tuple[int, int]] = {
        (destination_id, chain): (pk, last_seq)
        for pk, destination_id, chain, last_seq in SiemCursor.objects.values_list(
            "pk", "destination_id", "chain", "last_seq")}
    idle: dict[int, int] = {}
    total = 0
    for route in every:
        known = cursors.get((route.destination_id, route.chain))
        if known is not None and known[1] == heads.get(route.chain, 0):
            idle[known[0]] = known[1]
            continue
        try:
            total += stream_route(route).sent
        except Exception:  # one broken destination or chain must not stop the others; the next run retries it
            logger.exception("SIEM streaming of chain %s to %s stopped", route.chain, route.name)
    queries.siem_cursors_caught_up(idle)
    return total
