"""The gateway's composed admission script (config.admission, inference.admission.ADMISSION) against real Redis,
with edge-case arguments: no limits, zero limits, exact budgets, a lost epoch, every breaker state, huge numbers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from access.errors import QuotaExceeded
from access.quotas import QUOTA, Limit, QuotaPlan, QuotaRebuildNeeded, epoch_key, rpm_key, tpd_key
from config.admission import ScriptInput, composite, register_part, registered_parts
from config.redis import redis_client, redis_reset, redis_script
from inference.admission import ADMISSION
from inference.breaker import ALLOW, ALLOW_CLEAN, BREAKERS, PROBE, SKIP, BreakerCheck, breaker_key

DAY = "20261206"


@pytest.fixture
def schema() -> Iterator[str]:
    """A tenant schema name of this test's own; its keys are removed afterwards."""
    name = f"adm_{uuid.uuid4().hex[:10]}"
    yield name
    client = redis_client()
    for key in client.scan_iter(f"*{name}*"):
        client.delete(key)


@pytest.fixture
def targets() -> Iterator[list[tuple[str, str]]]:
    names = [(f"t{i}", f"adm-{uuid.uuid4().hex[:8]}") for i in range(3)]
    yield names
    redis_client().delete(*[breaker_key(n) for _k, n in names])


def plan(schema: str, *, tokens: int = 10, rpm: list[int] | None = None, tpd: list[int] | None = None,
         now_ms: int = 0) -> QuotaPlan:
    rpm_limits = [Limit(rpm_key(schema, None if i == 0 else i), limit, f"rpm {i}") for i, limit in
                  enumerate(rpm or [])]
    tpd_limits = [Limit(tpd_key(schema, DAY, None if i == 0 else i), limit, f"tpd {i}") for i, limit in
                  enumerate(tpd or [])]
    return QuotaPlan(schema=schema, day=DAY, tokens=tokens, rpm=rpm_limits, tpd=tpd_limits, now_ms=now_ms)


def with_epoch(schema: str) -> str:
    epoch = uuid.uuid4().hex
    redis_client().set(epoch_key(schema), epoch)
    return epoch


def test_no_limits_and_no_targets_admits_with_an_empty_epoch(schema: str) -> None:
    answer = ADMISSION.run(QUOTA.bind(plan(schema)), BREAKERS.bind(BreakerCheck(targets=[])))
    reservation = answer[QUOTA]
    assert (reservation.tokens, reservation.day_keys, reservation.epoch) == (0, [], "")
    assert answer[BREAKERS] == {}
    assert list(redis_client().scan_iter(f"*{schema}*")) == []  # nothing written


def test_a_missing_epoch_asks_for_a_rebuild_and_claims_no_probe(schema: str, targets: list[tuple[str, str]]) -> None:
    client = redis_client()
    client.hset(breaker_key(targets[0][1]), mapping={"state": "open", "open_until": 0})  # a probe is due
    with pytest.raises(QuotaRebuildNeeded):
        ADMISSION.run(QUOTA.bind(plan(schema, tpd=[100])), BREAKERS.bind(BreakerCheck(targets=targets)))
    assert client.hget(breaker_key(targets[0][1]), "state") == b"open"
    assert client.get(tpd_key(schema, DAY)) is None


def test_a_zero_limit_refuses_at_once_and_records_nothing(schema: str) -> None:
    with pytest.raises(QuotaRebuildNeeded):  # a window alone needs the epoch too (Redis may have lost it)
        ADMISSION.run(QUOTA.bind(plan(schema, rpm=[0])))
    with_epoch(schema)
    with pytest.raises(QuotaExceeded) as refused:
        ADMISSION.run(QUOTA.bind(plan(schema, rpm=[0])))
    assert refused.value.limit == "requests_per_minute" and refused.value.retry_after == 60
    assert redis_client().zcard(rpm_key(schema)) == 0
    with pytest.raises(QuotaExceeded) as spent:
        ADMISSION.run(QUOTA.bind(plan(schema, tokens=1, tpd=[0])))
    assert spent.value.limit == "tokens_per_day"


def test_a_budget_is_granted_to_the_exact_token_then_refused_without_a_trace(schema: str) -> None:
    epoch = with_epoch(schema)
    big = 2**50  # beyond 32 bits, exact in a Lua number
    first = ADMISSION.run(QUOTA.bind(plan(schema, tokens=big - 1, tpd=[big, big * 2])))[QUOTA]
    assert first.epoch == epoch and first.tokens == big - 1
    assert first.day_keys == [tpd_key(schema, DAY), tpd_key(schema, DAY, 1)]
    assert ADMISSION.run(QUOTA.bind(plan(schema, tokens=1, tpd=[big, big * 2])))[QUOTA].tokens == 1  # exactly full
    with pytest.raises(QuotaExceeded) as refused:
        ADMISSION.run(QUOTA.bind(plan(schema, tokens=1, tpd=[big, big * 2])))
    assert "tpd 0" in refused.value.message
    assert int(redis_client().get(tpd_key(schema, DAY)) or 0) == big
    assert int(redis_client().get(tpd_key(schema, DAY, 1)) or 0) == big  # the refusal added nothing anywhere


def test_the_second_window_refusing_leaves_the_first_untouched(schema: str) -> None:
    with_epoch(schema)
    now = int(time.time() * 1000)
    ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5, 1], now_ms=now)))
    with pytest.raises(QuotaExceeded) as refused:
        ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5, 1], now_ms=now + 10_000)))
    assert "rpm 1" in refused.value.message
    assert refused.value.retry_after == 50  # the user's window frees 60 s after its oldest entry
    assert redis_client().zcard(rpm_key(schema)) == 1
    # Sixty seconds later the window has slid past the first call.
    ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5, 1], now_ms=now + 60_001)))
    assert redis_client().zcard(rpm_key(schema, 1)) == 1


def test_breakers_are_asked_in_order_up_to_the_first_callable(schema: str, targets: list[tuple[str, str]]) -> None:
    client = redis_client()
    now = time.time()
    (k0, n0), (k1, n1), (k2, _n2) = targets
    client.hset(breaker_key(n0), mapping={"state": "open", "open_until": now + 600})
    client.hset(breaker_key(n1), mapping={"state": "open", "open_until": now - 1})  # cool-down over: probe
    check = BreakerCheck(targets=targets, now=now, probe_ttl=30)
    assert ADMISSION.run(QUOTA.bind(plan(schema)), BREAKERS.bind(check))[BREAKERS] == {k0: SKIP, k1: PROBE}
    assert client.hget(breaker_key(n1), "state") == b"half_open"
    # The probe lease is held: the next admission skips it too and reaches the clean third target.
    assert ADMISSION.run(QUOTA.bind(plan(schema)), BREAKERS.bind(check))[BREAKERS] == {
        k0: SKIP, k1: SKIP, k2: ALLOW_CLEAN}
    client.hset(breaker_key(n0), mapping={"state": "closed"})
    assert ADMISSION.run(BREAKERS.bind(check))[BREAKERS] == {k0: ALLOW}


def test_parts_out_of_order_or_unregistered_are_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="order"):
        ADMISSION.run(BREAKERS.bind(BreakerCheck(targets=[])), QUOTA.bind(plan(schema)))
    with pytest.raises(KeyError):
        composite("quota", "no-such-part")
    with pytest.raises(ValueError, match="already registered"):
        register_part("quota", lua="function(K, A) return 1, true end", encode=lambda v: ScriptInput(),
                      decode=lambda v, raw: raw)
    assert {"quota", "breakers"} <= set(registered_parts())


def test_a_new_part_composes_by_name_with_named_keys_and_args(schema: str) -> None:
    """How another app adds its own part (a money budget, say): named keys and arguments, a typed result."""
    spent = f"atrium:test:{{{schema}}}:spent"
    budget = register_part(
        "test-budget",
        lua="""function(K, A)
  local total = redis.call('INCRBY', K.spent, A.cents)
  if total > A.limit then redis.call('DECRBY', K.spent, A.cents) return {0, total - A.cents}, false end
  return {1, total}, true
end""",
        encode=lambda cents: ScriptInput(keys={"spent": spent}, args={"cents": cents, "limit": 100}),
        decode=lambda cents, raw: (bool(int(raw[0])), int(raw[1])))
    three = composite("quota", "test-budget", "breakers")
    check = BreakerCheck(targets=[])
    answer = three.run(QUOTA.bind(plan(schema)), budget.bind(60), BREAKERS.bind(check))
    assert answer[budget] == (True, 60) and answer.ran(BREAKERS)
    refused = three.run(QUOTA.bind(plan(schema)), budget.bind(60), BREAKERS.bind(check))
    assert refused[budget] == (False, 60) and refused.get(BREAKERS) is None  # stopped: breakers never asked


def test_a_script_redis_no_longer_knows_is_loaded_again(schema: str) -> None:
    """The admission's direct EVALSHA (config.redis.redis_evalsha) answers NOSCRIPT as redis-py's Script does: the
    script is loaded again and the call answered (a restarted or flushed Redis; here a stale hash)."""
    script = redis_script(ADMISSION.source)
    real = script.sha
    script.sha = "0" * 40
    try:
        with_epoch(schema)
        assert ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))[QUOTA].epoch
    finally:
        assert script.sha == real
        script.sha = real
    assert redis_client().zcard(rpm_key(schema)) == 1  # admitted once, not twice


def test_a_connection_the_server_closed_is_replaced(schema: str, settings: Any, monkeypatch: Any) -> None:
    """A connection Redis closed (a restart, a proxy's idle timeout) is not the call's failure: it is replaced
    before the admission's EVALSHA is sent, without the retry's back-off (the command is sent once). Both the pool's
    idle connection and the admission's own (config.redis's lanes) are closed here."""
    from config import redis as config_redis

    client = redis_client()
    with_epoch(schema)
    ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))
    own = client.client_id()  # the pool's idle connection
    lanes = [lane.sock.getsockname() for lane in config_redis._lanes if lane.sock is not None]
    assert lanes, "the admission keeps its connection for the next call"
    killer = redis.Redis.from_url(settings.REDIS_URL)
    try:
        assert killer.client_kill_filter(_id=own) == 1
        for host, port in lanes:
            assert killer.client_kill_filter(_type=None, addr=f"{host}:{port}") == 1
    finally:
        killer.close()

    def no_retry(_seconds: float) -> None:
        raise AssertionError("the admission retried instead of replacing the closed connection first")

    monkeypatch.setattr("redis.retry.sleep", no_retry)
    assert ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))[QUOTA].epoch
    assert redis_client().zcard(rpm_key(schema)) == 2
    assert client.client_id() != own
    assert [lane.sock.getsockname() for lane in config_redis._lanes if lane.sock is not None] != lanes


def test_an_admission_cut_in_the_middle_fails_and_the_next_one_reconnects(schema: str) -> None:
    """Redis closes the connection while the admission waits for its answer: the call fails with redis-py's
    ConnectionError (the gateway's 503; the connection's Retry, none for a client made from a URL, is what would
    send it again), and the next admission goes over a new connection."""
    from config import redis as config_redis

    with_epoch(schema)
    ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))
    lane = config_redis._lanes[-1]
    real = lane.sock
    assert real is not None

    class CutAfterSend:
        """The socket's send goes through; its reply never comes (the server closed the connection)."""

        def send_all(self, data: bytes, _timeout: float | None) -> None:
            real.sendall(b"PING\r\n")  # not the admission: a cut connection never ran it

        def recv(self, _size: int, _timeout: float | None) -> bytes:
            return b""

    lane.wire = CutAfterSend()  # type: ignore[assignment]
    try:
        with pytest.raises(redis.ConnectionError):
            ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))
    finally:
        real.close()
    assert lane.sock is None, "the cut connection is closed"
    assert ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))[QUOTA].epoch
    assert redis_client().zcard(rpm_key(schema)) == 2


def test_a_redis_that_never_answers_times_out_on_the_socket_timeout(schema: str) -> None:
    """The admission's EVALSHA reaches a server that never answers: redis-py's TimeoutError (the gateway's 503)
    once the connection's socket timeout has passed, never earlier, and far sooner than a stale longer bound
    (config.wire: the lane's socket is blocking, its reads bounded by SO_RCVTIMEO); the next admission
    reconnects."""
    import socket
    import threading

    from config import redis as config_redis
    from config.wire import Wire

    with_epoch(schema)
    ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))
    lane = config_redis._lanes[-1]
    real = lane.sock
    assert real is not None
    assert real.gettimeout() is None, "the lane's socket is blocking: no poll before its sends and reads"
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog) and never answers
    mute = socket.create_connection(silent.getsockname())
    wire = Wire(mute)
    mute.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, (30).to_bytes(8, "little") + bytes(8))
    wire.rcvtimeo = 30.0  # a stale 30 s bound: the lane's 0.2 s timeout must not wait for it
    lane.wire, lane.timeout = wire, 0.2
    outcome: list[Any] = []

    def admit() -> None:
        started = time.monotonic()
        try:
            ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))
            outcome.append((None, time.monotonic() - started))
        except redis.RedisError as exc:
            outcome.append((exc, time.monotonic() - started))

    thread = threading.Thread(target=admit, daemon=True)
    try:
        thread.start()
        thread.join(120)
        assert outcome, "the admission hung"
        error, took = outcome[0]
        assert isinstance(error, redis.TimeoutError)
        assert 0.2 <= took < 30 / 4
        assert lane.sock is None, "the connection that timed out is closed"
    finally:
        mute.close()
        silent.close()
        real.close()
    assert ADMISSION.run(QUOTA.bind(plan(schema, rpm=[5])))[QUOTA].epoch
    assert redis_client().zcard(rpm_key(schema)) == 2


def test_redis_unreachable_is_a_redis_error(settings: Any) -> None:
    """Nothing listening: the admission raises redis-py's ConnectionError, which the gateway answers with a 503."""
    from tests.conftest import free_port

    original = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    redis_reset()
    try:
        with pytest.raises(redis.ConnectionError):
            ADMISSION.run(QUOTA.bind(plan("adm_unreachable", rpm=[5])))
    finally:
        settings.REDIS_URL = original
        redis_reset()


def test_only_a_plain_resp2_connection_takes_the_lean_path() -> None:
    """redis_evalsha's own exchange (config.redis._Lane) speaks RESP2 over a plain socket; TLS, RESP3 and a
    client-side cache keep redis-py's path (their connections read what the lane does not expect)."""
    from redis.cache import CacheConfig

    from config.redis import _lean

    assert _lean(redis.Redis(host="127.0.0.1"))
    assert _lean(redis.Redis(unix_socket_path="/tmp/nowhere.sock"))
    assert not _lean(redis.Redis(host="127.0.0.1", ssl=True))
    assert not _lean(redis.Redis(host="127.0.0.1", protocol=3))
    assert not _lean(redis.Redis(host="127.0.0.1", protocol=3, cache_config=CacheConfig()))
