"""The official TypeScript SDK against a real gunicorn: extended thinking, tool use, a PDF document, prompt caching
and count_tokens pass through Atrium unchanged (tests/node/sdk/features_check.mjs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from inference.simulator import Simulator
from tests.conftest import ROOT, WebServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")]


def test_typescript_sdk_features(web: WebServer, simulator: Simulator, clean: None, committed_user: Any) -> None:
    simulator.prompt_cache.clear()
    _user, key = committed_user("alpha", "power_user")
    env = dict(os.environ, ATRIUM_BASE_URL=web.url("alpha.localhost"), ATRIUM_API_KEY=key)
    done = subprocess.run(["node", "features_check.mjs"], cwd=ROOT / "tests" / "node" / "sdk", env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    thinking = out["thinking"]
    assert thinking["kinds"] == ["thinking", "text"] and thinking["signed"]
    assert thinking["second_stop"] == "end_turn"  # the signature was checked by the provider: unchanged
    assert thinking["stream_kinds"] == ["thinking", "text"] and thinking["stream_signed"]
    assert {"thinking_delta", "signature_delta", "text_delta"} <= set(thinking["deltas"])
    tools = out["tools"]
    assert tools["stop"] == "tool_use" and tools["name"] == "get_weather" and tools["input"] == {"city": "Paris"}
    assert "18 C, sunny" in tools["answer"]
    assert "\u201cNode report\u201d (2 pages)" in out["document"]["text"]
    cache = out["cache"]
    assert cache["written"] > 1024 and cache["read"] == cache["written"] and cache["read_written"] == 0
    assert out["count_tokens"] > 7
