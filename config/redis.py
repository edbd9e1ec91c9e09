"""One shared Redis client per process, from settings.REDIS_URL."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings
from redis.commands.core import Script


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )


@lru_cache(maxsize=64)
def redis_script(source: str) -> Script:
    """A Lua script registered once per process: called by hash (EVALSHA), reloaded if Redis lost it."""
    return redis_client().register_script(source)


def redis_is_cluster() -> bool:
    """Whether the shared client talks to a Redis Cluster (scripts must then keep their keys in one slot)."""
    return isinstance(redis_client(), redis.RedisCluster)
