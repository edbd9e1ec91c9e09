"""Fixtures for the inference tests: one provider simulator per module, settings pointing at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from inference.breaker import breaker_reset
from inference.providers.base import provider_clients_clear
from inference.recorder import Codec
from inference.simulator import Simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator() as sim:
        yield sim


@pytest.fixture
def sim(simulator: Simulator, settings: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """The module's simulator with no faults and an empty request log; settings point every provider at it."""
    # Credential discovery must never reach for a cloud metadata server: there is no outside network here.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    settings.ATRIUM_ANTHROPIC_BASE_URL = f"{simulator.url}/anthropic"
    settings.ATRIUM_BEDROCK_BASE_URL = f"{simulator.url}/bedrock/{{region}}"
    settings.ATRIUM_VERTEX_BASE_URL = f"{simulator.url}/vertex/v1"
    settings.ATRIUM_BREAKER_FAILURES = 3
    settings.ATRIUM_BREAKER_COOLDOWN_S = 30.0
    simulator.faults.clear()
    simulator.reset_requests()
    breaker_reset()
    provider_clients_clear()
    yield simulator
    simulator.faults.clear()
    breaker_reset()


@pytest.fixture
def background(settings: Any, tmp_path: Any) -> Any:
    """Records written by a BatchWriter's own thread (as in production), the journal in the test's directory."""
    settings.ATRIUM_RECORD_IN_BACKGROUND = True
    settings.ATRIUM_RECORDER_LINGER_MS = 200
    settings.ATRIUM_RECORDER_BATCH = 500
    settings.ATRIUM_RECORDER_MAX_PENDING = 10_000
    settings.ATRIUM_RECORD_JOURNAL_DIR = str(tmp_path / "journal")
    settings.ATRIUM_RECORD_JOURNAL_SCAN_S = 0
    return settings


def string_codec() -> Codec[str]:
    """Journal lines for "tenant:n" strings (the tenant is the part before the colon)."""
    return Codec(key=lambda item: item.split(":")[0], encode=json.dumps, decode=json.loads)
