"""One shared Redis client per process, from settings.REDIS_URL: one server (`redis://`), the master behind
Sentinels (`redis+sentinel://`) or a Redis Cluster (`redis+cluster://`); see config/redis_urls.py."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

import redis
from django.conf import settings
from redis.cluster import ClusterNode
from redis.commands.core import Script
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
    return isinstance(cast(Any, redis_client()), redis.RedisCluster)


def redis_reset() -> None:
    """Forget the process's client and scripts (tests switching REDIS_URL)."""
    redis_client.cache_clear()
    redis_script.cache_clear()
