"""Quotas exact across every web and worker process: requests per minute and tokens per UTC day, per tenant
and (where the tenant sets it) per user, in Redis.

One Lua function (RESERVE_LUA, the `quota` part of the gateway's admission script: config.admission) checks every
applicable limit and, only if all pass, records the request and reserves the tokens, so concurrent processes can
never admit more than a limit between a check and an increment: `quota_plan` builds its input, `quota_outcome`
reads its answer.
After the call is recorded, `quota_settle_many` refunds the unused part of the reservation (or charges the
overrun), exactly once per request id; `quota_release` returns the whole reservation of a call refused before it
was sent upstream. When Redis comes back empty, `quota_rebuild` rebuilds the day's token counters from recorded
usage before anything is admitted (a missing epoch key tells).

Requests per minute is a sliding 60-second window (a sorted set of request ids), not a fixed minute, so a burst
straddling a minute boundary cannot get twice the limit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from access.counter_rebuild import rebuild_once, settled_add
from access.errors import QuotaExceeded
from access.quota_scripts import (
    REAP_LUA,
    REBUILD_WINDOWS_LUA,
    RELEASE_LUA,
    RESERVE_LUA,
    SETTLE_LUA,
    UNRESERVE_LUA,
)
from config.admission import ScriptInput, register_part
from config.ids import uuid4_hex
from config.redis import redis_client, redis_evalsha, redis_is_cluster, redis_script
from config.settings_once import setting_number

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from tenants.models import Tenant

logger = logging.getLogger(__name__)

PREFIX = "atrium:quota:"
WINDOW_S = 60
DAY_TTL_S = 172800  # a day's token counters and settled set outlive the day by one (late settlements)

class QuotaRebuildNeeded(Exception):
    """Redis has no epoch for this tenant (it restarted empty): the day's counters must be rebuilt first."""


@dataclass
class Reservation:
    """Tokens held for one call. `settled` makes settle/release idempotent."""

    tokens: int
    day_keys: list[str] = field(default_factory=list)
    settled: bool = False
    schema: str = ""
    epoch: str = ""  # the tenant's quota epoch the tokens were reserved in (see SETTLE_LUA)
    day: str = ""
    member: str = ""  # its entry in the tenant's pending reservations (reaped after its TTL if never settled)


def _day(now: datetime) -> str:
    return now.strftime("%Y%m%d")


# Today's UTC day as the keys spell it, with the day's number, kept until the day changes: every admission needs it
# and strftime cost more than the rest of the plan.
_today_cached: tuple[int, str] = (-1, "")


def _today() -> str:
    """`_day(datetime.now(UTC))`, computed once per UTC day (POSIX time has no leap seconds: a day is 86,400 s)."""
    global _today_cached
    number = int(time.time() // 86400)
    cached = _today_cached
    if cached[0] != number:
        cached = _today_cached = (number, _day(datetime.fromtimestamp(number * 86400, UTC)))
    return cached[1]


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


def tenant_prefix(schema: str) -> str:
    """Every quota key of a tenant starts with this. The `{schema}` hash tag keeps a tenant's keys in one Redis
    Cluster slot, so each script (reservation, settlement, rebuild) runs on one node."""
    return f"{PREFIX}{{{schema}}}:"


def rpm_key(schema: str, user_id: Any | None = None) -> str:
    return f"{tenant_prefix(schema)}rpm" if user_id is None else f"{tenant_prefix(schema)}u{user_id}:rpm"


def tpd_key(schema: str, day: str, user_id: Any | None = None) -> str:
    return f"{tenant_prefix(schema)}tpd:{day}" if user_id is None else f"{tenant_prefix(schema)}u{user_id}:tpd:{day}"


class Limit(NamedTuple):
    key: str
    limit: int
    label: str


def _limits(tenant: Tenant, user: User, day: str | None = None) -> tuple[list[Limit], list[Limit]]:
    schema = tenant.schema_name
    rpm: list[Limit] = []
    tpd: list[Limit] = []
    if tenant.requests_per_minute is not None:
        rpm.append(Limit(rpm_key(schema), tenant.requests_per_minute, "the organisation's requests per minute"))
    # Per-user limits: the platform's, or the tenant's own when stricter (Tenant.effective_*).
    user_rpm = tenant.effective_user_requests_per_minute
    if user_rpm is not None:
        rpm.append(Limit(rpm_key(schema, user.pk), user_rpm, "your requests per minute"))
    day = day or _today()
    if tenant.tokens_per_day is not None:
        tpd.append(Limit(tpd_key(schema, day), tenant.tokens_per_day, "the organisation's tokens per day"))
    user_tpd = tenant.effective_user_tokens_per_day
    if user_tpd is not None:
        tpd.append(Limit(tpd_key(schema, day, user.pk), user_tpd, "your tokens per day"))
    return rpm, tpd


class _Shape(NamedTuple):
    """What every plan of one (tenant, user, day, limits) shares: the limits, and the quota part's keys and limit
    arguments built from them (never changed once built: plans and script inputs only read them)."""

    rpm: list[Limit]
    tpd: list[Limit]
    keys: dict[str, str | list[str]]
    rpm_limits: list[int]
    tpd_limits: list[int]


def _shape(schema: str, rpm: list[Limit], tpd: list[Limit]) -> _Shape:
    keys: dict[str, str | list[str]] = {"rpm": [x.key for x in rpm], "tpd": [x.key for x in tpd]}
    if rpm or tpd:
        pending, pending_data = pending_keys(schema)
        keys.update(epoch=epoch_key(schema), pending=pending, pending_data=pending_data)
    return _Shape(rpm, tpd, keys, [x.limit for x in rpm], [x.limit for x in tpd])


# The shapes by (schema, day, the user's id when a per-user limit applies, the four limits): every value a shape is
# built from is in its key, so a changed limit, another day or another user finds another entry; emptied when large.
_shapes: dict[tuple[Any, ...], _Shape] = {}


@dataclass
class QuotaPlan:
    """One reservation's input to the quota part (RESERVE_LUA): the limits that apply and the tokens to hold."""

    schema: str
    day: str
    tokens: int
    rpm: list[Limit] = field(default_factory=list)
    tpd: list[Limit] = field(default_factory=list)
    now_ms: int = 0
    member: str = ""  # this call's entry in the request windows and the pending reservations
    ttl_ms: int = 0  # how long the reservation may stay unsettled before it is reaped
    shape: _Shape | None = field(default=None, repr=False, compare=False)  # quota_plan's, when it built the plan

    def __post_init__(self) -> None:
        self.now_ms = self.now_ms or int(time.time() * 1000)
        self.member = self.member or uuid4_hex()
        self.ttl_ms = self.ttl_ms or int(setting_number("ATRIUM_QUOTA_RESERVATION_TTL_S") * 1000)


def epoch_key(schema: str) -> str:
    return f"{tenant_prefix(schema)}epoch"


def settled_key(schema: str, day: str) -> str:
    return f"{tenant_prefix(schema)}settled:{day}"


def pending_keys(schema: str) -> tuple[str, str]:
    """The tenant's reservations not yet settled: a sorted set (member -> expiry ms) and its data hash."""
    return f"{tenant_prefix(schema)}pending", f"{tenant_prefix(schema)}pending:data"


def quota_plan(*, tenant: Tenant, user: User, tokens: int) -> QuotaPlan:
    day = _today()  # once: the day's keys and the plan's day are the same day, even at midnight
    schema = tenant.schema_name
    user_rpm = tenant.effective_user_requests_per_minute
    user_tpd = tenant.effective_user_tokens_per_day
    memo_key = (schema, day, user.pk if user_rpm is not None or user_tpd is not None else None,
                tenant.requests_per_minute, user_rpm, tenant.tokens_per_day, user_tpd)
    shape = _shapes.get(memo_key)
    if shape is None:
        if len(_shapes) >= 10_000:
            _shapes.clear()
        shape = _shapes[memo_key] = _shape(schema, *_limits(tenant, user, day))
    return QuotaPlan(schema=schema, day=day, tokens=int(tokens), rpm=shape.rpm, tpd=shape.tpd, shape=shape)


def _quota_input(plan: QuotaPlan) -> ScriptInput:
    shape = plan.shape
    if shape is None or shape.rpm is not plan.rpm or shape.tpd is not plan.tpd:
        shape = _shape(plan.schema, plan.rpm, plan.tpd)
    now_ms = plan.now_ms
    return ScriptInput(keys=shape.keys, args={"now_ms": str(now_ms), "window_from": str(now_ms - WINDOW_S * 1000),
                                              "expires_ms": str(now_ms + plan.ttl_ms), "member": plan.member,
                                              "tokens": str(plan.tokens), "rpm_limits": shape.rpm_limits,
                                              "tpd_limits": shape.tpd_limits})


def quota_outcome(plan: QuotaPlan, result: Any) -> Reservation:
    """The reservation RESERVE_LUA granted, or QuotaExceeded (with retry_after seconds) naming the limit;
    QuotaRebuildNeeded when Redis lost the tenant's counters."""
    code = int(result[0])
    if code == 2:
        raise QuotaRebuildNeeded(plan.schema)
    if code == 1:
        epoch = result[1].decode() if isinstance(result[1], bytes) else str(result[1] or "")
        tpd = plan.tpd
        return Reservation(tokens=plan.tokens if tpd else 0, day_keys=[x.key for x in tpd],
                           schema=plan.schema, epoch=epoch, day=plan.day,
                           member=plan.member if tpd and plan.tokens > 0 else "")
    index, retry_ms = int(result[1]) - 1, int(result[2])
    limits = plan.rpm + plan.tpd
    hit = limits[index]
    if index < len(plan.rpm):
        retry = max(1, (retry_ms + 999) // 1000)
        raise QuotaExceeded(f"Rate limit reached: {hit.label} is {hit.limit}. Retry in {retry} s.",
                            retry_after=retry, limit="requests_per_minute")
    raise QuotaExceeded(f"Token budget reached: {hit.label} is {hit.limit} (this request needs up to "
                        f"{plan.tokens}). It resets at 00:00 UTC.",
                        retry_after=_seconds_to_midnight(datetime.now(UTC)), limit="tokens_per_day")


# Registered with the admission module: the gateway composes it with the breakers (inference.admission).
QUOTA = register_part("quota", lua=RESERVE_LUA, encode=_quota_input, decode=quota_outcome)


def quota_settle_many(settlements: list[tuple[str, Reservation, int]]) -> None:
    """Settle calls (request id, reservation, tokens used) in one script call, each exactly once (_SETTLE): safe
    to retry after a Redis error, and to replay. A call is only settled after its usage is committed. On a Redis
    Cluster, one script call per tenant (a tenant's keys share a slot, two tenants' need not)."""
    if redis_is_cluster():
        by_tenant: dict[str, list[tuple[str, Reservation, int]]] = {}
        for item in settlements:
            by_tenant.setdefault(item[1].schema, []).append(item)
        for group in by_tenant.values():
            _settle(group)
    else:
        _settle(settlements)


# The four keys a settlement names besides its day keys (settled set, epoch, pending, pending data), per (tenant,
# day): four f-strings and seven calls a settled call, made once per day instead.
_settle_names: dict[tuple[str, str], tuple[str, str, str, str]] = {}


def _settle(settlements: list[tuple[str, Reservation, int]]) -> None:
    keys: dict[str, int] = {}
    # a (tenant, day)'s four key indexes in this script call, looked up once for its calls
    indexes: dict[tuple[str, str], tuple[int, ...]] = {}
    args: list[Any] = [0]
    count = 0
    for request_id, reservation, used_tokens in settlements:
        day_keys = reservation.day_keys
        if not day_keys or not request_id:
            continue
        where = (reservation.schema, reservation.day)
        found = indexes.get(where)
        if found is None:
            names = _settle_names.get(where)
            if names is None:
                if len(_settle_names) >= 4096:
                    _settle_names.clear()
                pending, pending_data = pending_keys(where[0])
                names = _settle_names[where] = (settled_key(*where), epoch_key(where[0]), pending, pending_data)
            found = indexes[where] = tuple(keys.setdefault(k, len(keys) + 1) for k in names)
        settled, epoch, pending_index, data_index = found
        args += [request_id, settled, epoch, reservation.epoch, reservation.tokens, int(used_tokens),
                 pending_index, data_index, reservation.member,
                 len(day_keys), *[keys.setdefault(k, len(keys) + 1) for k in day_keys]]
        count += 1
    if count:
        args[0] = count
        redis_evalsha(redis_script(SETTLE_LUA), list(keys), args)  # the lean path (config.redis), as admission


def quota_release(reservation: Reservation) -> None:
    """The call was refused before anything was sent upstream: give the whole reservation back. Only for calls
    that leave no usage record (a recorded call is settled by the recorder, exactly once)."""
    if reservation.settled or not reservation.day_keys:
        return
    reservation.settled = True
    redis_script(RELEASE_LUA)(keys=[*reservation.day_keys, epoch_key(reservation.schema),
                                    *pending_keys(reservation.schema)],
                              args=[reservation.tokens, reservation.epoch, reservation.member])


def quota_unreserve(plan: QuotaPlan) -> bool:
    """The admission's answer was lost (a connection error or timeout after Redis may have run the script): give
    back what it reserved under the plan's member, if it did (True), else nothing. The script itself is never sent
    again for the same plan: a second run would reserve a second time."""
    if not plan.tpd or plan.tokens <= 0:
        return False
    return bool(int(redis_script(UNRESERVE_LUA)(keys=[epoch_key(plan.schema), *pending_keys(plan.schema)],
                                                args=[plan.member])))


def quota_reservations_reap(*, schema: str, now_ms: int | None = None, batch: int = 1000) -> int:
    """Give back the tokens of the tenant's reservations whose TTL is over (their process died before settling).
    The tenant's next admission does it too (RESERVE_LUA); beat runs this for every tenant (access.tasks), so an
    idle tenant's counters are right as well. Returns how many reservations were released."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    keys = [epoch_key(schema), *pending_keys(schema)]
    total = 0
    while True:
        reaped = int(redis_script(REAP_LUA)(keys=keys, args=[now, batch]))
        total += reaped
        if reaped < batch:
            return total


def quota_rebuild(*, tenant: Tenant, recorded: Callable[[str], Iterator[tuple[str, int | None, int]]],
                  admitted: Callable[[datetime], Iterator[tuple[str, int | None, int]]] | None = None,
                  wait_s: float = 30.0) -> bool:
    """Rebuild the tenant's token counters of the day and its requests-per-minute windows from what was recorded,
    after Redis came back empty.

    `recorded(day)` yields (request id, user id, tokens charged) of the day's recorded calls (the gateway passes
    the usage ledger's reader: access does not read inference's tables); `admitted(since)` yields (request id,
    user id, admitted at in ms) of the calls admitted since then (the last minute), for the windows. One process
    rebuilds (a Redis lock); the others wait for the new epoch. Calls recorded meanwhile are settled through the
    same settled set, so each counts once. Returns True if this process rebuilt.
    """
    schema = tenant.schema_name

    def rebuild() -> bool:
        client = redis_client()
        if client.exists(epoch_key(schema)):
            return False
        day = _day(datetime.now(UTC))
        tenant_key = tpd_key(schema, day) if tenant.tokens_per_day is not None else None
        per_user = tenant.effective_user_tokens_per_day is not None
        settled_add(settled=settled_key(schema, day), counter_ttl_s=DAY_TTL_S, settled_ttl_s=DAY_TTL_S, rows=(
            (request_id, tokens, [k for k in (tenant_key, tpd_key(schema, day, user_id)
                                              if per_user and user_id is not None else None) if k])
            for request_id, user_id, tokens in recorded(datetime.now(UTC).date().isoformat())))
        if admitted is not None:
            _rebuild_windows(tenant, admitted)
        client.set(epoch_key(schema), uuid.uuid4().hex)
        logger.warning("quota counters of %s rebuilt from recorded usage (Redis had lost them)", schema)
        return True

    return rebuild_once(lock=f"{tenant_prefix(schema)}rebuild", epoch=epoch_key(schema), wait_s=wait_s,
                        rebuild=rebuild)


def _rebuild_windows(tenant: Tenant, admitted: Callable[[datetime], Iterator[tuple[str, int | None, int]]]) -> None:
    """The sliding windows of the last minute, from the calls admitted in it (so a restart of Redis does not hand
    out a second minute's requests)."""
    schema = tenant.schema_name
    tenant_window = rpm_key(schema) if tenant.requests_per_minute is not None else None
    per_user = tenant.effective_user_requests_per_minute is not None
    if tenant_window is None and not per_user:
        return
    keys: dict[str, int] = {}
    args: list[Any] = [0]
    for request_id, user_id, at_ms in admitted(datetime.now(UTC) - timedelta(seconds=WINDOW_S)):
        windows = [k for k in (tenant_window, rpm_key(schema, user_id) if per_user and user_id is not None else None)
                   if k]
        args += [request_id, at_ms, len(windows), *[keys.setdefault(k, len(keys) + 1) for k in windows]]
        args[0] += 1
    if args[0]:
        redis_script(REBUILD_WINDOWS_LUA)(keys=list(keys), args=args)


def quota_tokens_used_today(*, tenant: Tenant, user: User | None = None) -> int:
    day = _day(datetime.now(UTC))
    key = tpd_key(tenant.schema_name, day, None if user is None else user.pk)
    return int(redis_client().get(key) or 0)
