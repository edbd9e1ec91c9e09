"""A connection out of (and back into) a urllib3 pool for the direct exchange (inference/providers/http1.py), as the
pool's `_get_conn` and `_put_conn` do it, on its queue directly.

The pool's queue is a LifoQueue whose `get` and `put` each take a Condition and notify another; a non-blocking pool
(`block=False`: what AnthropicClient makes) never has anyone waiting on either, so the same pop and append under the
queue's mutex are the same operation. The liveness check of a kept connection (urllib3's `is_connected`: a poll of
its socket for reading, with no wait) polls through the connection's Wire, whose poll object is made once per socket
(config.wire). A closed pool, a blocking one, a full queue: urllib3's own methods, as before. `conn_wire`: the
connection's Wire, kept on it.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

import urllib3
from urllib3.util.wait import wait_for_read

from config.wire import Wire

log = logging.getLogger("urllib3.connectionpool")  # urllib3's own logger for a dropped connection


def conn_take(pool: urllib3.HTTPConnectionPool) -> Any:
    """`pool._get_conn()`: the last connection given back (closed first if its peer has closed it or sent
    something), else a new one."""
    queue = pool.pool
    if queue is None or pool.block:
        return pool._get_conn()
    with queue.mutex:
        kept = queue.queue
        conn = kept.pop() if kept else None
    if conn is None:
        return pool._new_conn()
    sock = conn.sock
    if sock is None:
        dropped = True
    else:
        wire = conn.__dict__.get("_atrium_wire")
        dropped = wire.readable() if wire is not None and wire.sock is sock else wait_for_read(sock, timeout=0.0)
    if dropped:
        log.debug("Resetting dropped connection: %s", pool.host)
        conn.close()
    return conn


def conn_give(pool: urllib3.HTTPConnectionPool, conn: Any) -> None:
    """`pool._put_conn(conn)`: back into the pool (None: a slot for a new connection)."""
    queue = pool.pool
    if queue is not None and not pool.block:
        with queue.mutex:
            kept = queue.queue
            if queue.maxsize <= 0 or len(kept) < queue.maxsize:
                kept.append(conn)
                queue.unfinished_tasks += 1
                return
    pool._put_conn(conn)


def conn_wire(conn: Any, sock: socket.socket) -> Wire | None:
    """The connection's Wire (made at its first exchange, kept on it while its socket lasts); None for a TLS socket,
    which keeps Python's own timeouts (config.wire)."""
    wire: Wire | None = conn.__dict__.get("_atrium_wire")
    if wire is not None and wire.sock is sock:
        return wire
    if isinstance(sock, ssl.SSLSocket) or type(sock) is not socket.socket:
        return None
    wire = Wire(sock)
    conn._atrium_wire = wire
    return wire
