"""Issue 14, "SSRF": a tenant admin's OIDC discovery URL was fetched by the server on every view of the SSO page, to
any address (loopback included): a port-scan oracle that also echoed the fetched document's `issuer`. Now: https to
public addresses only unless allow-listed, fetched only by an explicit, rate-limited "Test connection", with
timeouts and size caps, and the fetched content is never shown."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from config.outbound import OutboundRefused, outbound_check, outbound_get_json

pytestmark = pytest.mark.django_db

SECRET = "internal-service-secret-issuer"


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def log_message(self, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        _Handler.hits.append(self.path)
        if self.path.startswith("/big"):
            body = json.dumps({"issuer": SECRET, "pad": "x" * (2 * 1024 * 1024)}).encode()
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        elif self.path.startswith("/slow"):
            time.sleep(3)
            body = b"{}"
        else:
            body = json.dumps({"issuer": SECRET, "authorization_endpoint": "x", "token_endpoint": "x",
                               "jwks_uri": "x"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def internal() -> Iterator[str]:
    """An 'internal service' on loopback, like the metadata endpoint or an admin port an attacker would probe."""
    server = ThreadingHTTPServer(("127.0.0.2", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.parametrize("url", [
    "http://127.0.0.2/", "https://127.0.0.2/", "https://[::1]/", "https://[::ffff:127.0.0.2]/", "https://10.1.2.3/",
    "https://192.168.0.1/", "https://172.16.5.4/", "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/", "https://0.0.0.0/", "https://224.0.0.1/", "https://localhost/", "http://8.8.8.8/",
    "ftp://8.8.8.8/", "https://user:pw@8.8.8.8/", "file:///etc/passwd", "https:///nohost",
])
def test_refused_destinations(url: str, settings: Any) -> None:
    settings.ATRIUM_OUTBOUND_ALLOWED_HOSTS = []
    with pytest.raises(OutboundRefused) as refused:
        outbound_check(url)
    assert "127.0.0" not in refused.value.message and "169.254" not in refused.value.message


def test_public_https_passes_the_check_and_the_allow_list_opens_a_network(settings: Any) -> None:
    settings.ATRIUM_OUTBOUND_ALLOWED_HOSTS = []
    assert str(outbound_check("https://8.8.8.8/.well-known/openid-configuration")[1]) == "8.8.8.8"
    settings.ATRIUM_OUTBOUND_ALLOWED_HOSTS = ["10.20.0.0/16"]
    assert str(outbound_check("http://10.20.3.4:8080/x")[1]) == "10.20.3.4"
    with pytest.raises(OutboundRefused):
        outbound_check("https://10.21.0.1/")


def test_size_cap_redirects_and_timeouts(internal: str, settings: Any) -> None:
    settings.ATRIUM_OUTBOUND_ALLOWED_HOSTS = ["127.0.0.2"]
    assert outbound_get_json(f"{internal}/doc")["issuer"] == SECRET  # allow-listed: fetched
    with pytest.raises(OutboundRefused, match="larger than"):
        outbound_get_json(f"{internal}/big")
    with pytest.raises(OutboundRefused, match="HTTP 302"):
        outbound_get_json(f"{internal}/redirect")
    with pytest.raises(OutboundRefused, match="in time"):
        outbound_get_json(f"{internal}/slow", timeout=0.5)


def _sso_admin(tenant: Any, make_user: Any, in_tenant: Any, discovery_url: str) -> tuple[Client, int]:
    from access.models import OIDCConfig

    admin = make_user(tenant, "admin", is_staff=True)
    with in_tenant(tenant):
        config = OIDCConfig.objects.first() or OIDCConfig(client_id="atrium")
        config.issuer, config.discovery_url, config.enabled = "https://idp.example.com", discovery_url, False
        config.save()
        client = Client(HTTP_HOST="alpha.localhost")
        client.force_login(admin)
    return client, config.pk


def test_sso_page_fetches_nothing_and_the_test_is_refused_for_loopback(internal: str, tenant_a: Any,
                                                                       make_user: Any, in_tenant: Any,
                                                                       settings: Any) -> None:
    from config.redis import redis_client

    redis_client().delete("atrium:oidc-test:alpha")
    client, pk = _sso_admin(tenant_a, make_user, in_tenant, f"{internal}/doc")
    _Handler.hits.clear()
    for _ in range(3):
        assert client.get(f"/admin/access/oidcconfig/{pk}/change/").status_code == 200
    assert _Handler.hits == []  # viewing the SSO page makes no outbound request
    assert client.get(f"/admin/access/oidcconfig/{pk}/test-connection/").status_code == 405
    tested = client.post(f"/admin/access/oidcconfig/{pk}/test-connection/", follow=True).content.decode()
    assert "Not usable" in tested and "private, loopback or link-local" in tested
    assert _Handler.hits == [] and SECRET not in tested
    # A closed port answers exactly the same: no port-scan oracle.
    redis_client().delete("atrium:oidc-test:alpha")
    client, pk = _sso_admin(tenant_a, make_user, in_tenant, "http://127.0.0.2:9/doc")
    closed = client.post(f"/admin/access/oidcconfig/{pk}/test-connection/", follow=True).content.decode()
    assert "private, loopback or link-local" in closed


def test_the_fetched_document_is_never_echoed_and_tests_are_rate_limited(internal: str, tenant_a: Any,
                                                                         make_user: Any, in_tenant: Any,
                                                                         settings: Any) -> None:
    from config.redis import redis_client

    settings.ATRIUM_OUTBOUND_ALLOWED_HOSTS = ["127.0.0.2"]
    redis_client().delete("atrium:oidc-test:alpha")
    client, pk = _sso_admin(tenant_a, make_user, in_tenant, f"{internal}/doc")
    first = client.post(f"/admin/access/oidcconfig/{pk}/test-connection/", follow=True).content.decode()
    assert "another issuer than the configured one" in first and SECRET not in first
    second = client.post(f"/admin/access/oidcconfig/{pk}/test-connection/", follow=True).content.decode()
    assert "limited to one every" in second
    assert _Handler.hits.count("/doc") == 1
