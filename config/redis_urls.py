"""Redis URLs beyond one node, parsed without Django (the settings use it too).

- `redis://`, `rediss://`, `unix://`: one server (redis-py's own URL format).
- `redis+sentinel://[:password@]host1:26379,host2:26379/<service>[/<db>][?sentinel_password=…&ssl=1]`: the master
  of `<service>` as the Sentinels report it (redis-py `Sentinel.master_for`); after a failover the client finds
  the new master by itself. `password` is the master's; `sentinel_password` the Sentinels' own, when they need one.
- `redis+cluster://[:password@]host1:6379,host2:6379[?ssl=1]`: a Redis Cluster (redis-py `RedisCluster`); every
  Lua script of Atrium keeps its keys in one hash slot (a `{tenant}` hash tag; docs/deployment.md).

Celery's broker and result backend take the same `redis+sentinel://` URL: `celery_sentinel` turns it into kombu's
`sentinel://…;sentinel://…` form with the `master_name` transport option. Redis Cluster is not a Celery broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"


@dataclass(frozen=True)
class MultiNodeUrl:
    scheme: str
    hosts: list[tuple[str, int]]
    service: str = ""  # Sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def ssl(self) -> bool:
        return self.options.get("ssl", "").lower() in {"1", "true", "yes"}


def parse_multi_node(url: str) -> MultiNodeUrl | None:
    """The parsed URL when it is a Sentinel or Cluster URL, else None (a plain redis:// URL)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in {SENTINEL_SCHEME, CLUSTER_SCHEME}:
        return None
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    default_port = 26379 if scheme == SENTINEL_SCHEME else 6379
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"{scheme} URL: empty host in {item!r}")
        hosts.append((host.strip("[]"), int(port) if port else default_port))
    path = [p for p in parts.path.split("/") if p]
    service, db = "", 0
    if scheme == SENTINEL_SCHEME:
        if not path:
            raise ValueError("redis+sentinel URL: name the master after the hosts (…:26379/mymaster[/db])")
        service = unquote(path[0])
        db = int(path[1]) if len(path) > 1 else 0
    elif path:
        raise ValueError("redis+cluster URL: a cluster has no databases; leave the path empty")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return MultiNodeUrl(scheme=scheme, hosts=hosts, service=service, db=db, username=username, password=password,
                        options=options)


def celery_sentinel(url: str) -> tuple[str, dict[str, object]] | None:
    """(kombu URL, transport options) for a `redis+sentinel://` URL, else None: Celery's broker and result
    backend speak `sentinel://h1:26379;sentinel://h2:26379` with `master_name` in their transport options."""
    parsed = parse_multi_node(url)
    if parsed is None or parsed.scheme != SENTINEL_SCHEME:
        return None
    auth = f":{parsed.password}@" if parsed.password else ""
    kombu = ";".join(f"sentinel://{auth}{host}:{port}/{parsed.db}" for host, port in parsed.hosts)
    options: dict[str, object] = {"master_name": parsed.service}
    sentinel_password = parsed.options.get("sentinel_password")
    if sentinel_password:
        options["sentinel_kwargs"] = {"password": sentinel_password}
    return kombu, options
