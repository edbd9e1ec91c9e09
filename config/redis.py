"""One shared Redis client per process, from settings.REDIS_URL: one server (`redis://`), the master behind
Sentinels (`redis+sentinel://`) or a Redis Cluster (`redis+cluster://`); see config/redis_urls.py."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

import hiredis
import redis
from django.conf import settings
from redis.cluster import ClusterNode
from redis.commands.core import Script
from redis.exceptions import NoScriptError
from redis.sentinel import Sentinel

from config.redis_urls import CLUSTER_SCHEME, parse_multi_node

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
    """`script(keys=keys, args=args)` on the process's client, in fewer of redis-py's layers: the gateway's one
    round trip per call (config.admission) spent more CPU in them than in the command.

    Same connection pool, same Retry (the connection's: on a connection error or timeout the connection is closed
    and the command sent again as often as it allows, then the error is raised), same reload of a script Redis
    lost (NOSCRIPT). A cluster client, and a client traced by OpenTelemetry (whose Redis span wraps
    execute_command), take redis-py's own path."""
    client = redis_client()
    if _is_cluster(client) or hasattr(type(client).execute_command, "__wrapped__"):
        return script(keys=keys, args=args, client=client)
    try:
        return _evalsha(client, script.sha, keys, args)
    except NoScriptError:
        # Redis restarted or was flushed: load the script again (the sha is the same), as Script.__call__ does.
        script.sha = client.script_load(script.script)
        return _evalsha(client, script.sha, keys, args)


def _evalsha(client: redis.Redis, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    pool = client.connection_pool
    conn = pool.get_connection()
    # Packed once by hiredis (a dependency: redis-py's own packer only adds a Python pass over the arguments).
    packed = hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))

    def send() -> Any:
        conn.send_packed_command([packed])
        return conn.read_response()

    try:
        return conn.retry.call_with_retry(send, lambda _error: conn.disconnect())
    finally:
        try:
            if conn.should_reconnect():
                conn.disconnect()
                conn.connect()
        finally:
            pool.release(conn)


def redis_reset() -> None:
    """Forget the process's client and scripts (tests switching REDIS_URL)."""
    redis_client.cache_clear()
    redis_script.cache_clear()
    _is_cluster.cache_clear()
