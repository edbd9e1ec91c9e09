"""Random ids from a buffered CSPRNG (config/ids.py): valid version-4 UUIDs, never repeated across threads, and a
forked child never hands out the bytes its parent had already read (gunicorn forks its workers after the master
may have made ids)."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from config import ids


def test_ids_are_version_4_uuids_and_never_repeat_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def work(out: list[str]) -> None:
        out.extend(ids.uuid4_hex() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [value for out in made for value in out]
    assert len(set(everything)) == len(everything) == 16_000  # crosses many 4 KiB blocks
    parsed = uuid.UUID(everything[0])
    assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    ids.uuid4()  # the parent has a block read and most of it left
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then exit without running anything else of the test session
        os.close(read_end)
        os.write(write_end, "".join(ids.uuid4_hex() for _ in range(4)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parent = "".join(ids.uuid4_hex() for _ in range(4))
    child_ids = {child[i:i + 32] for i in range(0, 128, 32)}
    parent_ids = {parent[i:i + 32] for i in range(0, 128, 32)}
    assert len(child_ids) == 4 and not child_ids & parent_ids


def test_the_hex_form_is_uuid4_hex_of_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """uuid4_hex and uuid4_text spell out what uuid.UUID(bytes=..., version=4) makes of the same random bytes."""
    for raw in (bytes(16), b"\xff" * 16, os.urandom(16), os.urandom(16)):
        monkeypatch.setattr(ids, "random_bytes", lambda n=16, raw=raw: raw)
        assert ids.uuid4_hex() == uuid.UUID(bytes=raw, version=4).hex == ids.uuid4().hex
        assert ids.uuid4_text() == str(uuid.UUID(bytes=raw, version=4))
