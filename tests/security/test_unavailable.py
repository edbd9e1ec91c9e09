"""PostgreSQL or Redis unreachable is a 503 with Retry-After in the API's error shape, never a 500 (the walk under
real faults, a database cut and Redis stopped mid-load, is tests/chat/test_faults.py)."""

from __future__ import annotations

import json
import sys

import pytest
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory
from redis.exceptions import ConnectionError as RedisConnectionError

from config.error_views import server_error
from config.http import error_from_exception


@pytest.mark.parametrize("exc", [OperationalError("connection to server at 10.0.0.5 failed: Connection refused"),
                                 InterfaceError("connection already closed"),
                                 RedisConnectionError("Error 111 connecting to redis.internal:6379.")])
def test_an_unreachable_backend_is_a_503_the_client_may_retry(exc: Exception) -> None:
    response = error_from_exception(exc)
    assert response.status_code == 503
    assert response["retry-after"] == "2"
    body = json.loads(response.content)
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    # What the caller can act on, nothing of the configuration (hosts, ports, driver messages).
    assert "Retry" in body["error"]["message"]
    assert "10.0.0.5" not in response.content.decode() and "redis.internal" not in response.content.decode()


def test_any_other_failure_stays_a_500() -> None:
    assert error_from_exception(ValueError("a bug")).status_code == 500


@pytest.mark.parametrize(("path", "kind"), [("/v1/messages", "json"), ("/chat/", "html")])
def test_djangos_500_handler_answers_a_backend_outage_with_503(path: str, kind: str) -> None:
    """A failure in a middleware (the tenant's host lookup when PostgreSQL is cut) reaches Django's handler500
    while the exception is being handled."""
    request = RequestFactory().get(path)
    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError:
        assert sys.exc_info()[1] is not None
        response = server_error(request)
    assert response.status_code == 503 and response["Retry-After"] == "2"
    if kind == "json":
        assert json.loads(response.content)["error"]["type"] == "api_error"
    else:
        assert b"Temporarily unavailable" in response.content
    try:
        raise KeyError("a bug")
    except KeyError:
        assert server_error(request).status_code == 500
