"""One shared Redis client per process, from settings.REDIS_URL: one server (`redis://`), the master behind
Sentinels (`redis+sentinel://`) or a Redis Cluster (`redis+cluster://`); see config/redis_urls.py."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

import hiredis
import redis
from django.conf import settings
from redis._parsers import _HiredisParser
from redis.cluster import ClusterNode
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.sentinel import Sentinel, SentinelManagedConnection

from config.redis_urls import CLUSTER_SCHEME, parse_multi_node
from config.wire import Wire

_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5}


def redis_from_url(url: str) -> redis.Redis:
    """A client for any URL Atrium accepts: a redis.Redis, or for a cluster a redis.RedisCluster (typed as
    redis.Redis: it has the same commands, and Atrium uses no command a cluster lacks)."""
    parsed = parse_multi_node(url)
    if parsed is None:
        return redis.Redis.from_url(url, health_check_interval=30, **_TIMEOUTS)
    auth: dict[str, Any] = {"username": parsed.username, "password": parsed.password}
    if parsed.scheme == CLUSTER_SCHEME:
        return cast(redis.Redis, redis.RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts], ssl=parsed.ssl, **auth,
            **_TIMEOUTS))
    sentinel_kwargs: dict[str, Any] = dict(_TIMEOUTS)
    if parsed.options.get("sentinel_password"):
        sentinel_kwargs["password"] = parsed.options["sentinel_password"]
    sentinel = Sentinel(parsed.hosts, sentinel_kwargs=sentinel_kwargs, ssl=parsed.ssl, **_TIMEOUTS)
    return sentinel.master_for(parsed.service, db=parsed.db, health_check_interval=30, **auth)


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    """The process's client (redis.Redis API; a RedisCluster on a cluster)."""
    return redis_from_url(settings.REDIS_URL)


@lru_cache(maxsize=64)
def redis_script(source: str) -> Script:
    """A Lua script registered once per process: called by hash (EVALSHA), reloaded if Redis lost it."""
    return redis_client().register_script(source)


def redis_is_cluster() -> bool:
    """Whether the shared client talks to a Redis Cluster (scripts must then keep their keys in one slot)."""
    return _is_cluster(redis_client())


@lru_cache(maxsize=4)
def _is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster)


def redis_evalsha(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """`script(keys=keys, args=args)` on the process's client, without redis-py's layers: the gateway's one round
    trip per call (config.admission) spent more CPU in them (the pool's lock and liveness poll, the health check,
    the parser's buffers) than in the command. The command goes over a `_Lane` (below).

    Same connections (redis-py's, made from the client's pool settings: the same host, or the master a Sentinel
    names, the same AUTH, SELECT, TLS and timeouts), same Retry (the connection's: on a connection error or timeout
    the connection is closed and the command sent again as often as it allows, then the error is raised), same
    reload of a script Redis lost (NOSCRIPT). A cluster client, a client traced by OpenTelemetry (whose Redis span
    wraps execute_command), a client-side cache, RESP3 and TLS take redis-py's own path."""
    client = redis_client()
    if _is_cluster(client) or not _lean(client) or hasattr(type(client).execute_command, "__wrapped__"):
        return script(keys=keys, args=args, client=client)
    try:
        return _evalsha(client, script.sha, keys, args)
    except NoScriptError:
        # Redis restarted or was flushed: load the script again (the sha is the same), as Script.__call__ does.
        script.sha = client.script_load(script.script)
        return _evalsha(client, script.sha, keys, args)


@lru_cache(maxsize=4)
def _lean(client: Any) -> bool:
    """Whether `redis_evalsha` may use its lanes on this (non-cluster) client's pool: no client-side cache, RESP2,
    no TLS (whose own records, such as session tickets, can make an idle socket readable)."""
    pool = client.connection_pool
    return (getattr(pool, "cache", None) is None and str(pool.connection_kwargs.get("protocol") or 2) == "2"
            and not issubclass(pool.connection_class, redis.SSLConnection))


class _Lane:
    """One connection of redis_evalsha's: redis-py's Connection (made with the client's pool settings) connects
    and authenticates; the command and its reply then go straight over its socket, parsed by one hiredis Reader.

    As the pool does before lending a connection, a socket that is readable before the command is sent (the
    server closed it: a restart, an idle timeout) is replaced first. On Sentinel, a READONLY reply (the master
    became a replica) closes the connection so the next one asks the Sentinels again, as redis-py's
    SentinelManagedConnection does."""

    __slots__ = ("conn", "fd", "poller", "pool", "reader", "sock", "timeout", "wire")

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.conn: Any = pool.connection_class(**pool.connection_kwargs)
        self.sock: socket.socket | None = None
        self.wire: Wire | None = None
        self.reader: hiredis.Reader | None = None
        self.fd = -1
        self.poller = select.poll()
        self.timeout: float | None = None

    def connect(self) -> socket.socket:
        self.disconnect()
        conn = self.conn
        conn.connect()
        sock: socket.socket = conn._sock
        encoder = conn.encoder
        options: dict[str, Any] = {"protocolError": InvalidResponse, "replyError": _HiredisParser.parse_error,
                                   "errors": encoder.encoding_errors}
        if encoder.decode_responses:
            options["encoding"] = encoder.encoding
        self.reader = hiredis.Reader(**options)
        self.fd = sock.fileno()
        self.poller.register(self.fd, select.POLLIN | select.POLLPRI)
        # Sent and read without a poll before each send and recv, under the timeout redis-py gave the socket.
        self.timeout = sock.gettimeout()
        self.wire = Wire(sock)
        self.sock = sock
        return sock

    def disconnect(self, _error: Exception | None = None) -> None:
        fd, self.fd, self.sock, self.reader, self.wire = self.fd, -1, None, None, None
        if fd >= 0:
            self.poller.unregister(fd)
        self.conn.disconnect()

    def exchange(self, packed: bytes) -> Any:
        if self.sock is None or self.poller.poll(0):
            self.connect()
        reader, wire, timeout = self.reader, self.wire, self.timeout
        assert reader is not None
        assert wire is not None
        try:
            wire.send_all(packed, timeout)
            reply = reader.gets()
            while reply is False:
                chunk = wire.recv(65536, timeout)
                if not chunk:
                    raise OSError("Connection closed by server.")
                reader.feed(chunk)
                reply = reader.gets()
        except TimeoutError as exc:
            self.disconnect()
            raise RedisTimeoutError(f"Timeout reading from {self.conn._host_error()}") from exc
        except OSError as exc:
            self.disconnect()
            raise RedisConnectionError(f"Error while reading from {self.conn._host_error()} : {exc.args}") from exc
        except BaseException:
            self.disconnect()
            raise
        if isinstance(reply, ResponseError):
            if isinstance(reply, ReadOnlyError) and isinstance(self.conn, SentinelManagedConnection):
                self.disconnect()
                raise RedisConnectionError("The previous master is now a slave")
            raise reply
        return reply


# The lanes not in use, shared by the process's threads (list.pop and append are atomic): a call takes one, or
# makes one when all are busy, and gives it back.
_lanes: list[_Lane] = []


def _evalsha(client: redis.Redis, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    pool = client.connection_pool
    try:
        lane = _lanes.pop()
        if lane.pool is not pool:  # the client was replaced (redis_reset)
            lane.disconnect()
            lane = _Lane(pool)
    except IndexError:
        lane = _Lane(pool)
    # Packed once by hiredis (a dependency: redis-py's own packer only adds a Python pass over the arguments).
    packed = hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))
    try:
        return lane.conn.retry.call_with_retry(lambda: lane.exchange(packed), lane.disconnect)
    finally:
        _lanes.append(lane)


def _forget_lanes() -> None:
    """In a forked child: the parent's sockets are the parent's (dropped, not closed: redis-py closes a connection
    of another process without shutting it down)."""
    _lanes.clear()


os.register_at_fork(after_in_child=_forget_lanes)


def redis_reset() -> None:
    """Forget the process's client and scripts (tests switching REDIS_URL)."""
    redis_client.cache_clear()
    redis_script.cache_clear()
    _is_cluster.cache_clear()
    _lean.cache_clear()
    while _lanes:
        _lanes.pop().disconnect()
