"""The API lane and django.urls' per-thread URLconf: Django's handler sets ROOT_URLCONF before its middleware, the
lane leaves the thread without one (which every reader takes as ROOT_URLCONF); a view resolves and reverses alike
either way, a URLconf an earlier request left behind is removed, and each request ends without one."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.urls import get_resolver, get_urlconf, reverse, set_urlconf

from config.api_lane import ApiLane
from tests.chat.test_v1_lane import _environ, _wsgi, no_connection_closing  # noqa: F401 - a fixture
from tests.conftest import tenant_host

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("no_connection_closing")
def test_the_view_resolves_and_reverses_as_under_django(sim: Any, tenant_a: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import inference.api_v1

    seen: list[tuple[Any, str, str]] = []
    api_error = inference.api_v1.api_error

    def observed(*args: Any, **kwargs: Any) -> Any:  # GET /v1/messages answers through it (a 405)
        seen.append((get_resolver(get_urlconf()), reverse("v1_messages"), get_resolver().resolve("/v1/models").route))
        return api_error(*args, **kwargs)

    monkeypatch.setattr(inference.api_v1, "api_error", observed)
    handler = WSGIHandler()
    lane = ApiLane(handler)
    environ = lambda: _environ(tenant_host(tenant_a), REQUEST_METHOD="GET")  # noqa: E731
    django_answer = _wsgi(handler, environ())
    assert get_urlconf() is None
    set_urlconf("config.urls_left_behind")  # what a request that never ended could leave in this thread
    lane_answer = _wsgi(lane, environ())
    again = _wsgi(lane, environ())  # the resolver match remembered for the URLconf: the lane's short path
    assert get_urlconf() is None
    assert django_answer[0] == lane_answer[0] == again[0] == "405 Method Not Allowed"
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]
    assert seen[0][0] is get_resolver()
