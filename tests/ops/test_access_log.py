"""The access log's lines written in batches (config/access_log.py, through config.serve's WSGI wrapper): whole,
in order, in writes of at most PIPE_BUF bytes (so two workers sharing a pipe never interleave), and written out
at exit. No wall-clock limits: a timed batch is waited for with a generous guard."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from config import access_log, serve
from tests.conftest import ROOT
from tests.ops.test_serve import _app, _Proto, _scope


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.handler: logging.Handler | None = None

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[Writes]:
    """granian.access as granian configures it (one stream handler, '%(message)s'), into a Writes."""
    logger = logging.getLogger("granian.access")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    out = Writes()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    out.handler = handler
    try:
        yield out
    finally:
        access_log.flush_all()
        logger.handlers[:], logger.level, logger.propagate = saved


def wrapper(stream: Writes) -> Any:
    """Our WSGI wrapper, made while granian.access has only its stream handler (pytest's log capture, which adds
    its own handlers once a test starts, would send the lines through logging instead)."""
    assert stream.handler is not None
    logging.getLogger("granian.access").handlers[:] = [stream.handler]
    return serve.wsgi_callback_wrapper(_app, {"url_path_prefix": None}, serve.ACCESS_LOG_FORMAT)


def paths(text: str) -> list[str]:
    return [line.split(" ")[2] for line in text.splitlines()]


def test_lines_wait_in_the_buffer_and_are_written_whole_and_in_order(stream: Writes, monkeypatch: Any) -> None:
    monkeypatch.setenv("ATRIUM_WEB_ACCESS_LOG_FLUSH_S", "3600")  # no timed batch during the test
    served = wrapper(stream)
    wanted = [f"/v1/p{i}" + "x" * (i % 97) for i in range(300)]
    for path in wanted:
        served(_Proto(), _scope(path))
    assert stream.getvalue() == "", "a line each request is what the buffer saves"
    access_log.flush_all()
    assert paths(stream.getvalue()) == wanted
    assert len(stream.writes) > 1, "300 lines are more than one write of PIPE_BUF bytes"
    for write in stream.writes:
        assert len(write.encode()) <= access_log.PIPE_BUF
        assert write.endswith("\n")


def test_a_batch_is_written_a_moment_later(stream: Writes, monkeypatch: Any) -> None:
    monkeypatch.setenv("ATRIUM_WEB_ACCESS_LOG_FLUSH_S", "0.05")
    served = wrapper(stream)
    for i in range(5):
        served(_Proto(), _scope(f"/v1/t{i}"))
    guard = time.monotonic() + 60
    while stream.getvalue().count("\n") < 5 and time.monotonic() < guard:
        time.sleep(0.01)
    assert paths(stream.getvalue()) == [f"/v1/t{i}" for i in range(5)]


def test_zero_writes_each_line_at_once(stream: Writes, monkeypatch: Any) -> None:
    monkeypatch.setenv("ATRIUM_WEB_ACCESS_LOG_FLUSH_S", "0")
    wrapper(stream)(_Proto(), _scope("/v1/now"))
    assert paths(stream.getvalue()) == ["/v1/now"]


def test_pieces_hold_whole_lines_of_at_most_pipe_buf_bytes() -> None:
    lines = ["a" * 100 + "\n"] * 50 + ["\u00e9" * 3000 + "\n", "b" * 5000 + "\n", "c\n"]
    pieces = access_log.chunks(lines)
    assert "".join(pieces) == "".join(lines)
    for piece in pieces:
        assert piece.endswith("\n")
        assert len(piece.encode()) <= access_log.PIPE_BUF or piece.count("\n") == 1  # a longer line alone
    assert "b" * 5000 + "\n" in pieces


CHILD = r"""
import logging, sys
from config import serve
from tests.ops.test_serve import _app, _Proto, _scope
logger = logging.getLogger("granian.access")
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(message)s"))
logger.handlers[:] = [handler]
logger.setLevel(logging.INFO)
logger.propagate = False
served = serve.wsgi_callback_wrapper(_app, {"url_path_prefix": None}, serve.ACCESS_LOG_FORMAT)
name = sys.argv[1]
for i in range(2000):
    served(_Proto(), _scope(f"/v1/{name}/{i}/" + name * 40))
sys.exit(0)  # a graceful exit: the buffer is written out
"""


def test_two_workers_sharing_a_pipe_never_interleave_and_lose_nothing_at_exit() -> None:
    """Two processes write their access lines (batched, a batch an hour: only the exit writes them) into one
    pipe: every line arrives whole, each process's in its order."""
    read, write = os.pipe()
    env = dict(os.environ, ATRIUM_WEB_ACCESS_LOG_FLUSH_S="3600", PYTHONPATH=str(ROOT))
    children = [subprocess.Popen([sys.executable, "-c", CHILD, name], cwd=ROOT, env=env, stdout=write)
                for name in ("a", "b")]
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    for child in children:
        assert child.wait(120) == 0
    lines = out.splitlines()
    assert len(lines) == 4000
    for name in ("a", "b"):
        mine = [line for line in lines if f" /v1/{name}/" in line]
        assert [line.split(" ")[2] for line in mine] == [f"/v1/{name}/{i}/" + name * 40 for i in range(2000)]
        assert all(line.startswith('10.0.0.7 "POST /v1/') and line.endswith("ms") for line in mine)


def test_a_workers_exit_writes_the_buffer_out(stream: Writes, monkeypatch: Any) -> None:
    monkeypatch.setenv("ATRIUM_WEB_ACCESS_LOG_FLUSH_S", "3600")
    monkeypatch.setattr("inference.records.writer.stop", lambda: None)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    wrapper(stream)(_Proto(), _scope("/v1/last"))
    assert stream.getvalue() == ""
    serve._worker_exit()
    assert paths(stream.getvalue()) == ["/v1/last"]
