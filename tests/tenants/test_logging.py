"""The JSON log format: one parseable object per line, with the request id of the request being served."""

from __future__ import annotations

import json
import logging
from typing import Any

from config.logging import JsonFormatter
from config.middleware import _request_id


def test_json_formatter_emits_one_object_with_request_id_and_extras() -> None:
    token = _request_id.set("req_abc123")
    try:
        record = logging.makeLogRecord(
            {"name": "atrium.test", "levelno": logging.INFO, "levelname": "INFO", "msg": "tenant %s ready",
             "args": ("alpha",), "tenant": "alpha"}
        )
        line = JsonFormatter().format(record)
    finally:
        _request_id.reset(token)
    payload = json.loads(line)
    assert payload["message"] == "tenant alpha ready"
    assert payload["request_id"] == "req_abc123"
    assert payload["tenant"] == "alpha"
    assert payload["level"] == "INFO"
    assert "\n" not in line


def test_every_response_carries_a_request_id(client_a: Any) -> None:
    response = client_a.get("/healthz", HTTP_X_REQUEST_ID="lb-42")
    assert response["request-id"] == "lb-42"
    generated = client_a.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    assert generated["request-id"].startswith("req_")
