"""Django's test client with /v1/* through the API lane (config/api_lane.py), as the served application does: every
test that calls /v1 with a test client walks the lane (ATRIUM_TEST_API_LANE=0: Django's handler, as before)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test.client import ClientHandler, closing_iterator_wrapper, conditional_content_removal


class LaneClientHandler(ClientHandler):
    """ClientHandler whose /v1/* requests take the lane; the rest, and everything the test client adds (the request
    on the response, close on completion, no connection closing inside the test's transaction), as ClientHandler."""

    lane: Any = None

    def __call__(self, environ: dict[str, Any]) -> Any:
        if self._middleware_chain is None:
            self.load_middleware()
        if self.lane is None:
            from config.api_lane import ApiLane

            self.lane = ApiLane(self)  # type: ignore[arg-type]
        if not self.lane.takes(environ):
            return super().__call__(environ)
        request_started.disconnect(close_old_connections)
        try:
            response, request = self.lane.handle(environ)
        finally:
            request_started.connect(close_old_connections)
        conditional_content_removal(request, response)
        response.wsgi_request = request
        response.through_lane = True
        if response.streaming:
            response.streaming_content = closing_iterator_wrapper(response.streaming_content, response.close)
        else:
            request_finished.disconnect(close_old_connections)
            try:
                self.lane.close(response)
            finally:
                request_finished.connect(close_old_connections)
        return response


def lane_in_the_test_client() -> Iterator[None]:
    """For the session: Django's test client with LaneClientHandler (ATRIUM_TEST_API_LANE=0: as Django ships it)."""
    if os.environ.get("ATRIUM_TEST_API_LANE", "1") == "0":
        yield
        return
    from django.test import client

    original = client.ClientHandler
    client.ClientHandler = LaneClientHandler  # type: ignore[misc]
    try:
        yield
    finally:
        client.ClientHandler = original  # type: ignore[misc]
