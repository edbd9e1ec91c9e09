"""bench/servers.py's relays: one POST /v1/messages relayed to the simulator's /anthropic/v1/messages, under WSGI
(`wsgi_app`), ASGI (`asgi_app`), RSGI (`rsgi_app`) or a plain asyncio server (`python bench/_relay.py PORT N`).

Read by each server process from its environment:
  RELAY_UPSTREAM   host:port of the simulator
  RELAY_CLIENT     the async servers' upstream client: `streams` (asyncio streams, a pool of keep-alive
                   connections, HTTP/1.1 by hand) or `httpx` (httpx.AsyncClient); WSGI uses http.client, one
                   keep-alive connection per thread
  RELAY_WORK       `bare` (relay only) or `full`: per call, a JSON parse and encode of the request and of the
                   answer (of each streamed event), one Redis EVALSHA round trip (a rate and token counter script),
                   a journal line pwritten and fdatasynced (group commit: one fdatasync covers every line appended
                   before it started; in a thread executor for the async servers, RELAY_JOURNAL_SYNC=inline: in
                   the loop; in the request thread under WSGI) before the answer completes
  RELAY_REDIS      Redis URL for `full`; RELAY_REDIS_CLIENT `lean` (RESP by hand) or `redispy` (redis.asyncio);
                   WSGI uses redis-py's blocking client (with hiredis)
  RELAY_JOURNAL    directory for `full`'s journal files (one per process)
  RELAY_BURN_MS    Python CPU to spend per call (half before the upstream call, half after), a stand-in for the
                   policy code; a fixed loop calibrated once per process
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from _relay_work import KEYS, LUA, AsyncJournal, LeanRedis, RedisPy, SyncJournal, burn, record_line

UPSTREAM = os.environ.get("RELAY_UPSTREAM", "127.0.0.1:8765")
HOST, PORT = UPSTREAM.rsplit(":", 1)[0], int(UPSTREAM.rsplit(":", 1)[1])
PATH = "/anthropic/v1/messages"
HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-bench", "anthropic-version": "2023-06-01",
           "host": UPSTREAM}
HEAD = (f"POST {PATH} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())).encode()
FULL = os.environ.get("RELAY_WORK", "bare") == "full"


@dataclass
class Reply:
    status: int
    content_type: bytes
    body: bytes | None  # None: a streamed answer, its pieces in `chunks`
    chunks: AsyncIterator[bytes] | None = None


# --- async upstream clients ----------------------------------------------------------------------------------

class StreamsUpstream:
    """HTTP/1.1 over asyncio streams: a LIFO pool of keep-alive connections (asyncio sets TCP_NODELAY)."""

    def __init__(self) -> None:
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: bytes) -> Reply:
        for attempt in (0, 1):
            fresh = not self.idle
            reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(HOST, PORT)
            writer.write(HEAD + b"content-length: %d\r\n\r\n" % len(body) + body)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                if fresh or attempt:
                    raise
                continue
            fields = dict(line.split(b": ", 1) for line in head[:-4].split(b"\r\n")[1:])
            fields = {k.lower(): v for k, v in fields.items()}
            status, ctype = int(head[9:12]), fields.get(b"content-type", b"application/json")
            if b"content-length" in fields:
                data = await reader.readexactly(int(fields[b"content-length"]))
                self.idle.append((reader, writer))
                return Reply(status, ctype, data)
            return Reply(status, ctype, None, self._chunks(reader, writer))
        raise ConnectionError("upstream closed the connection")

    async def _chunks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AsyncIterator[bytes]:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if not size:
                await reader.readuntil(b"\r\n")
                self.idle.append((reader, writer))
                return
            yield (await reader.readexactly(size + 2))[:-2]


class HttpxUpstream:
    def __init__(self) -> None:
        import httpx

        self.url = f"http://{UPSTREAM}{PATH}"
        self.client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=None,
                                                                        max_keepalive_connections=64))
        self.headers = {k: v for k, v in HEADERS.items() if k != "host"}

    async def post(self, body: bytes) -> Reply:
        request = self.client.build_request("POST", self.url, content=body, headers=self.headers)
        response = await self.client.send(request, stream=True)
        ctype = response.headers.get("content-type", "application/json").encode()
        if "content-length" in response.headers:
            data = await response.aread()
            await response.aclose()
            return Reply(response.status_code, ctype, data)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for piece in response.aiter_raw():
                    yield piece
            finally:
                await response.aclose()

        return Reply(response.status_code, ctype, None, chunks())


_state: dict[str, Any] = {}


def _async_parts() -> tuple[Any, Any, AsyncJournal | None]:
    if "upstream" not in _state:  # per process, created in its loop
        _state["upstream"] = HttpxUpstream() if os.environ.get("RELAY_CLIENT") == "httpx" else StreamsUpstream()
        if FULL:
            url = os.environ.get("RELAY_REDIS", "redis://127.0.0.1:6379/0")
            _state["redis"] = RedisPy(url) if os.environ.get("RELAY_REDIS_CLIENT") == "redispy" else LeanRedis(url)
            _state["journal"] = AsyncJournal(os.environ["RELAY_JOURNAL"])
    return _state["upstream"], _state.get("redis"), _state.get("journal")


async def relay(body: bytes) -> Reply:
    """The async core shared by ASGI, RSGI and the plain server."""
    upstream, redis, journal = _async_parts()
    if not FULL:
        return await upstream.post(body)
    assert journal is not None
    burn()
    payload = json.loads(body)
    await redis.evalsha(KEYS, [str(payload.get("max_tokens", 1))])
    reply = await upstream.post(json.dumps(payload).encode())
    if reply.body is not None:
        message = json.loads(reply.body)
        reply.body = json.dumps(message).encode()
        burn()
        await journal.write(record_line(message))
        return reply
    assert reply.chunks is not None
    reply.chunks = _journaled(reply.chunks, journal)
    return reply


async def _journaled(chunks: AsyncIterator[bytes], journal: AsyncJournal) -> AsyncIterator[bytes]:
    last: dict[str, Any] | None = None
    async for piece in chunks:
        for line in piece.split(b"\n"):
            if line.startswith(b"data: "):
                last = json.loads(line[6:])
        yield piece
    burn()
    await journal.write(record_line(last))


# --- the interfaces ------------------------------------------------------------------------------------------

async def asgi_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    reply = await relay(body)
    if reply.body is not None:
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"content-type", reply.content_type), (b"content-length", b"%d" % len(reply.body))]})
        await send({"type": "http.response.body", "body": reply.body})
        return
    await send({"type": "http.response.start", "status": reply.status,
                "headers": [(b"content-type", reply.content_type)]})
    assert reply.chunks is not None
    async for piece in reply.chunks:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    body = await protocol()
    reply = await relay(body)
    headers = [("content-type", reply.content_type.decode())]
    if reply.body is not None:
        protocol.response_bytes(reply.status, headers, reply.body)
        return
    transport = protocol.response_stream(reply.status, headers)
    assert reply.chunks is not None
    async for piece in reply.chunks:
        await transport.send_bytes(piece)


def __getattr__(name: str) -> Any:
    """`NoDelayHttpTools` (uvicorn --http _relay:NoDelayHttpTools): uvicorn's httptools protocol with TCP_NODELAY
    set on each connection. With --workers N uvicorn binds the socket itself with proto 0, so asyncio's transports
    skip their TCP_NODELAY (base_events._set_nodelay wants proto == IPPROTO_TCP), and the response's head and body,
    written separately, meet Nagle's algorithm and the client's delayed ACK: ~45 ms per call here."""
    if name != "NoDelayHttpTools":
        raise AttributeError(name)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class NoDelayHttpTools(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            _nodelay(transport.get_extra_info("socket"))
            super().connection_made(transport)

    return NoDelayHttpTools


def _nodelay(sock: Any) -> None:
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _plain_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _nodelay(writer.get_extra_info("socket"))  # a socket made by create_server has proto 0: see __getattr__
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            reply = await relay(await reader.readexactly(length) if length else b"")
            start = b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\n" % (reply.status, reply.content_type)
            if reply.body is not None:
                writer.write(start + b"content-length: %d\r\n\r\n" % len(reply.body) + reply.body)
                continue
            writer.write(start + b"transfer-encoding: chunked\r\n\r\n")
            assert reply.chunks is not None
            async for piece in reply.chunks:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def plain_serve(port: int, workers: int) -> None:
    """A listening socket shared by `workers` forked processes, each an asyncio loop of stream handlers."""
    sock = socket.create_server(("127.0.0.1", port), backlog=1024)
    for _ in range(workers - 1):
        if os.fork() == 0:
            break
    asyncio.run(_plain_main(sock))


async def _plain_main(sock: socket.socket) -> None:
    server = await asyncio.start_server(_plain_connection, sock=sock)
    async with server:
        await server.serve_forever()


# --- WSGI: blocking threads, http.client, the same work done the threaded way --------------------------------

_local = threading.local()
_init_lock = threading.Lock()


def _sync_parts() -> tuple[http.client.HTTPConnection, Any]:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if FULL and "sync_journal" not in _state:
        with _init_lock:
            import redis

            client = redis.Redis.from_url(os.environ.get("RELAY_REDIS", "redis://127.0.0.1:6379/0"))
            _state.setdefault("sync_redis", client.register_script(LUA))
            _state.setdefault("sync_journal", SyncJournal(os.environ["RELAY_JOURNAL"]))
    return conn, _state.get("sync_redis")


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes] | list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    conn, script = _sync_parts()
    if FULL:
        burn()
        payload = json.loads(body)
        script(keys=KEYS, args=[str(payload.get("max_tokens", 1))])
        body = json.dumps(payload).encode()
    try:
        conn.request("POST", PATH, body, {k: v for k, v in HEADERS.items() if k != "host"})
        response = conn.getresponse()
    except (OSError, http.client.HTTPException):
        _local.conn = None
        raise
    ctype = response.getheader("content-type", "application/json")
    if not response.chunked:
        data = response.read()
        if FULL:
            message = json.loads(data)
            data = json.dumps(message).encode()
            burn()
            _state["sync_journal"].write(record_line(message))
        start_response(f"{response.status} OK", [("content-type", ctype), ("content-length", str(len(data)))])
        return [data]
    start_response(f"{response.status} OK", [("content-type", ctype)])
    return _sync_chunks(response)


def _sync_chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    last: dict[str, Any] | None = None
    while piece := response.read1(65536):
        if FULL:
            for line in piece.split(b"\n"):
                if line.startswith(b"data: "):
                    last = json.loads(line[6:])
        yield piece
    if FULL:
        burn()
        _state["sync_journal"].write(record_line(last))


if __name__ == "__main__":
    plain_serve(int(sys.argv[1]), int(sys.argv[2]))
