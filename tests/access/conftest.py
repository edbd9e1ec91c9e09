"""Fixtures for access tests: two loopback OpenID providers (Node oidc-provider), SSO configuration
for tenants alpha and beta, and a real web server for the browser.

One provider process (two issuers on two ports) and one gunicorn per session keep the suite quick.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, TENANT_A, TENANT_B, subprocess_env

IDP_DIR = ROOT / "tests" / "node" / "idp"
# The web server's outbox: Django's file-based mail backend, one file per message (config/settings/test.py).
MAIL_DIR = Path(f"/tmp/atrium-test-mail-{os.getpid()}")

USERS_A = {
    "alice": {"email": "alice@a.example", "email_verified": True, "name": "Alice Archer",
              "given_name": "Alice", "family_name": "Archer", "preferred_username": "alice",
              "groups": ["atrium-power", "unrelated-group"]},
    "mallory": {"email": "mallory@evil.example", "email_verified": True, "preferred_username": "mallory",
                "groups": ["atrium-power"]},
}
USERS_B = {
    "bob": {"email": "bob@b.example", "email_verified": True, "preferred_username": "bob",
            "groups": ["atrium-basic"]},
}
# IdP group -> Atrium role, per tenant.
MAPPING_A = {"atrium-power": "power_user", "atrium-basic": "basic_user", "atrium-admins": "admin",
             "atrium-compliance": "compliance_officer"}
MAPPING_B = {"atrium-basic": "basic_user"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}; see {log}")


@dataclass
class Idp:
    name: str
    port: int
    client_id: str
    client_secret: str

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mint(self, claims: dict[str, Any], *, alg: str = "RS256", header: dict[str, Any] | None = None) -> str:
        """A token genuinely signed with this IdP's keys (iss/iat/exp default in; null removes a claim)."""
        response = httpx.post(f"{self.issuer}/test/mint", json={"claims": claims, "alg": alg, "header": header or {}})
        response.raise_for_status()
        return str(response.json()["token"])

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.issuer}/test/stats").json())

    def jwks(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.issuer}/jwks").json()["keys"])


@dataclass
class IdpServers:
    a: Idp
    b: Idp
    web_port: int


@pytest.fixture(scope="session")
def idp_servers() -> Iterator[IdpServers]:
    if not (IDP_DIR / "node_modules" / "oidc-provider").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: `make test-deps` installs the test IdP (tests/node/idp)")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=IDP_DIR, check=True)
    web_port = free_port()
    servers = IdpServers(
        a=Idp("a", free_port(), "atrium-alpha", "alpha-client-secret-0123456789"),
        b=Idp("b", free_port(), "atrium-beta", "beta-client-secret-0123456789"),
        web_port=web_port,
    )

    def spec(idp: Idp, host: str, users: dict[str, Any]) -> dict[str, Any]:
        base = f"http://{host}:{web_port}"
        return {"name": idp.name, "port": idp.port, "users": users,
                "clients": [{"client_id": idp.client_id, "client_secret": idp.client_secret,
                             "redirect_uris": [f"{base}/oidc/callback/"],
                             "post_logout_redirect_uris": [f"{base}/accounts/login/"]}]}

    config = {"providers": [spec(servers.a, "alpha.localhost", USERS_A), spec(servers.b, "beta.localhost", USERS_B)]}
    log = Path("/tmp/atrium-test-idp.log")
    with log.open("wb") as handle:
        proc = subprocess.Popen(["node", "provider.mjs"], cwd=IDP_DIR, stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, "IDP_CONFIG": json.dumps(config)}, start_new_session=True)
    try:
        wait_port(servers.a.port, proc, log)
        wait_port(servers.b.port, proc, log)
        yield servers
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _configure(tenant: Any, idp: Idp, mapping: dict[str, str], **fields: Any) -> None:
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    from access.models import OIDCConfig, OIDCGroupMapping

    with schema_context(tenant.schema_name):
        OIDCConfig.objects.filter(pk=1).delete()
        config = OIDCConfig.objects.create(
            enabled=True, display_name=f"IdP {idp.name.upper()}", issuer=idp.issuer, client_id=idp.client_id,
            client_secret=idp.client_secret, scopes="openid email profile groups", groups_claim="groups", **fields,
        )
        for claim_value, role in mapping.items():
            OIDCGroupMapping.objects.create(config=config, claim_value=claim_value, group=Group.objects.get(name=role))


def _cleanup(tenant: Any, issuers: list[str]) -> None:
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    from access.models import OIDCConfig

    with schema_context(tenant.schema_name):
        OIDCConfig.objects.filter(pk=1).delete()
        get_user_model().objects.filter(identities__issuer__in=issuers).delete()


@pytest.fixture(scope="session")
def sso(idp_servers: IdpServers, tenants: dict[str, Any], django_db_blocker: Any) -> Iterator[IdpServers]:
    """Committed SSO configuration: alpha trusts IdP A (only @a.example), beta trusts IdP B."""
    from django.db import connection

    issuers = [idp_servers.a.issuer, idp_servers.b.issuer]
    with django_db_blocker.unblock():
        _configure(tenants[TENANT_A], idp_servers.a, MAPPING_A, allowed_email_domains="a.example")
        _configure(tenants[TENANT_B], idp_servers.b, MAPPING_B)
        connection.set_schema_to_public()
    try:
        yield idp_servers
    finally:
        with django_db_blocker.unblock():
            for slug in (TENANT_A, TENANT_B):
                _cleanup(tenants[slug], issuers)
            connection.set_schema_to_public()


@pytest.fixture(scope="session")
def web_server(sso: IdpServers) -> Iterator[str]:
    """The web server (`python -m config.serve`) on the port the IdPs' redirect URIs name; yields the port."""
    port = sso.web_port
    log = Path("/tmp/atrium-test-access-web.log")
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "config.serve", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--threads", "4"],
            cwd=ROOT, env=subprocess_env(ATRIUM_TEST_EMAIL_DIR=str(MAIL_DIR)), stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_port(port, proc, log)
        yield str(port)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the admin screens' browser tests (tests/access/admin_browser.py) -----------------------------------------------

@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/images with ATRIUM_SCREENSHOTS=1, else a temporary directory."""
    target = ROOT / "docs" / "images" if os.environ.get("ATRIUM_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def people(django_db_blocker: Any) -> Iterator[Any]:
    from tests.access.admin_browser import People

    made = People(django_db_blocker)
    yield made
    made.cleanup()
