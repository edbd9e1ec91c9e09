"""Random identifiers (request ids, audit event ids, quota entries) without a system call each.

`uuid.uuid4()` reads 16 bytes with its own `os.urandom` call: several per API call, and under load each system
call is a moment the thread can lose the CPU and then wait for the interpreter lock (docs/benchmarks.md). These
come from the same source (the kernel's CSPRNG, so they stay unguessable) read 4 KiB at a time. A forked child
(gunicorn worker, Celery prefork child) drops what its parent had read, so no two processes ever hand out the
same bytes.
"""

from __future__ import annotations

import os
import threading
import uuid

_BLOCK = 4096
_lock = threading.Lock()
_block = b""
_position = _BLOCK


def _forget() -> None:
    global _block, _position, _lock
    _block, _position, _lock = b"", _BLOCK, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def random_bytes(n: int = 16) -> bytes:
    """`n` (at most 4096) bytes from the kernel's CSPRNG, each byte handed out once."""
    global _block, _position
    with _lock:
        if _position + n > len(_block):
            _block, _position = os.urandom(max(_BLOCK, n)), 0
        start = _position
        _position += n
        return _block[start:_position]


def uuid4() -> uuid.UUID:
    """A random (version 4) UUID, as uuid.uuid4() makes it."""
    return uuid.UUID(bytes=random_bytes(16), version=4)


def _v4_bytes() -> bytearray:
    """16 random bytes with what uuid.UUID(version=4) sets: the version (4) and the RFC 4122 variant."""
    raw = bytearray(random_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw


def uuid4_hex() -> str:
    """uuid4().hex without the UUID object (a request id on every API call)."""
    return _v4_bytes().hex()


def uuid4_text() -> str:
    """str(uuid4()) without the UUID object (its constructor is most of the cost)."""
    h = _v4_bytes().hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
