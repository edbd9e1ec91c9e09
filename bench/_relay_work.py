"""bench/_relay.py's per-call work under RELAY_WORK=full: the Redis script, the journal (async and threaded), the
record line and the CPU stand-in for the policy code (RELAY_BURN_MS)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

LUA = """
local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], 60000) end
local t = redis.call('INCRBY', KEYS[2], ARGV[1])
if t == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[2], 86400000) end
return {n, t}"""
KEYS = ["bench-front:{bench}:rpm", "bench-front:{bench}:tpd"]


# --- CPU stand-in for the policy code ------------------------------------------------------------------------

def _calibrate() -> float:
    """Loop iterations per millisecond of this process's CPU."""
    rounds, started = 200_000, time.thread_time()
    _spin(rounds)
    return rounds / max(1e-6, (time.thread_time() - started) * 1000)


def _spin(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += i & 7
    return total


BURN_MS = float(os.environ.get("RELAY_BURN_MS", "0") or 0)
BURN_ROUNDS = int(_calibrate() * BURN_MS / 2) if BURN_MS else 0


def burn() -> None:
    if BURN_ROUNDS:
        _spin(BURN_ROUNDS)


def record_line(message: dict[str, Any] | None) -> bytes:
    usage = (message or {}).get("usage")
    return (json.dumps({"id": uuid.uuid4().hex, "tenant": "bench", "key": "k_bench", "model": "claude-sonnet-5-5",
                        "usage": usage, "status": 200, "at": time.time()}) + "\n").encode()


class LeanRedis:
    """EVALSHA over asyncio streams, RESP by hand (what config.redis's lean connections are to redis-py)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.db = parts.hostname or "127.0.0.1", parts.port or 6379, (parts.path[1:] or "0")
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.sha = ""

    @staticmethod
    def _command(*args: str | bytes) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else arg
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(out)

    async def _reply(self, reader: asyncio.StreamReader) -> Any:
        line = await reader.readuntil(b"\r\n")
        kind, rest = line[:1], line[1:-2]
        if kind == b"*":
            return [await self._reply(reader) for _ in range(int(rest))]
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if rest == b"-1" else (await reader.readexactly(int(rest) + 2))[:-2]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        return rest

    async def call(self, *args: str | bytes) -> Any:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(self._command("SELECT", self.db))
            await self._reply(reader)
        writer.write(self._command(*args))
        reply = await self._reply(reader)
        self.idle.append((reader, writer))
        return reply

    async def evalsha(self, keys: list[str], args: list[str]) -> Any:
        if not self.sha:
            self.sha = (await self.call("SCRIPT", "LOAD", LUA)).decode()
        return await self.call("EVALSHA", self.sha, str(len(keys)), *keys, *args)


class RedisPy:
    def __init__(self, url: str) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(url)
        self.script = self.client.register_script(LUA)

    async def evalsha(self, keys: list[str], args: list[str]) -> Any:
        return await self.script(keys=keys, args=args)


INLINE_SYNC = os.environ.get("RELAY_JOURNAL_SYNC", "executor") == "inline"


JOURNAL_CAP = 64 << 20  # each process's journal file, preallocated (as Atrium's segments are)


def _segment(directory: str) -> tuple[int, int]:
    """This process's journal file in `directory`, preallocated: (its descriptor, its size)."""
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, f"journal-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.posix_fallocate(fd, 0, JOURNAL_CAP)
    return fd, JOURNAL_CAP


class AsyncJournal:
    """pwrite in the loop (a page-cache copy), fdatasync in the default thread executor; group commit. With
    RELAY_JOURNAL_SYNC=inline the fdatasync runs in the loop itself (no thread hand-off; the loop waits for it)."""

    def __init__(self, directory: str) -> None:
        self.fd, self.cap = _segment(directory)
        self.size = self.appended = self.synced = 0
        self.syncing: asyncio.Future[None] | None = None

    async def write(self, line: bytes) -> None:
        if self.size + len(line) > self.cap:
            self.size = 0  # written again from its start, as Atrium's journal recycles segments
        os.pwrite(self.fd, line, self.size)
        self.size += len(line)
        self.appended += 1
        mine = self.appended
        if INLINE_SYNC:  # one yield, so the lines of the calls ready in this turn of the loop join, then inline
            await asyncio.sleep(0)
            if self.synced < mine:
                upto = self.appended
                os.fdatasync(self.fd)
                self.synced = max(self.synced, upto)
            return
        while self.synced < mine:
            if self.syncing is not None:  # reset in the same step that resolves it: never seen done here
                await self.syncing
                continue
            upto, loop = self.appended, asyncio.get_running_loop()
            self.syncing = done = loop.create_future()
            try:
                await loop.run_in_executor(None, os.fdatasync, self.fd)
                self.synced = max(self.synced, upto)
            finally:
                self.syncing = None
                done.set_result(None)


class SyncJournal:
    """Atrium's journal discipline with threads: pwrite under a lock, one fdatasync at a time covering all."""

    def __init__(self, directory: str) -> None:
        self.fd, self.cap = _segment(directory)
        self.size = self.appended = self.synced = 0
        self.lock, self.cond, self.syncing = threading.Lock(), threading.Condition(), False

    def write(self, line: bytes) -> None:
        with self.lock:
            if self.size + len(line) > self.cap:
                self.size = 0
            os.pwrite(self.fd, line, self.size)
            self.size += len(line)
            self.appended += 1
            mine = self.appended
        with self.cond:
            while self.synced < mine:
                if self.syncing:
                    self.cond.wait()
                    continue
                self.syncing, upto = True, self.appended
                self.cond.release()
                try:
                    os.fdatasync(self.fd)
                finally:
                    self.cond.acquire()
                    self.syncing, self.synced = False, max(self.synced, upto)
                    self.cond.notify_all()


