"""Issue 14: WebAuthn passkeys as a second factor beside TOTP, in a real Chromium with its virtual authenticator
(CDP WebAuthn.enable + WebAuthn.addVirtualAuthenticator) against a real gunicorn with the second factor enforced.

The right side: an administrator registers a passkey at the first visit to the admin, and confirms with it at the
next sign-in; both audited. The wrong side: the passkey made on tenant alpha is bound to alpha's host (the browser
will not use it for beta, and an assertion made for alpha and replayed to beta is refused by beta's server), an
assertion cannot be replayed on its own tenant either, and a signed-in administrator without a verified factor does
not reach the admin.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat.conftest import web_env
from tests.conftest import WebServer, hosts_resolve

pytestmark = pytest.mark.e2e
PASSWORD = "pw-Passkey-123456"


@pytest.fixture(scope="module")
def mfa_web(simulator: Any, tenants: dict[str, Any]) -> Iterator[WebServer]:
    hosts_resolve("alpha.localhost", "beta.localhost")
    server = WebServer(web_env(simulator, ATRIUM_MFA_ENFORCED="true"), workers=1).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admins(committed: None) -> Iterator[dict[str, tuple[str, str, int]]]:
    """Committed administrators (staff, role admin) on alpha (two) and beta: name -> (schema, username, pk)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django_tenants.utils import schema_context

    made: dict[str, tuple[str, str, int]] = {}
    for name, schema in (("alpha", "alpha"), ("alpha2", "alpha"), ("beta", "beta")):
        with schema_context(schema):
            username = f"pk-{name}-{uuid.uuid4().hex[:6]}"
            user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True,
                                                        email=f"{username}@example.com")
            user.groups.add(Group.objects.get(name="admin"))
            made[name] = (schema, username, int(user.pk))
    yield made
    for schema, _username, pk in made.values():
        with schema_context(schema):
            get_user_model().objects.filter(pk=pk).delete()


def _authenticator(page: Any) -> tuple[Any, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, str(added["authenticatorId"])


def _sign_in(page: Any, base: str, username: str, target: str = "/admin/") -> None:
    page.goto(f"{base}/accounts/login/?next={target}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def _ceremony_in_new_session(page: Any, base: str, username: str, assertion: dict[str, Any]) -> dict[str, Any]:
    """A new session signed in with the password (so at the passkey step), a passkey ceremony begun in it, then
    completed with `assertion` (captured earlier) instead of the authenticator's answer: the server's status and
    JSON body."""
    page.context.clear_cookies()
    _sign_in(page, base, username)
    page.wait_for_url(re.compile(r".*/account/mfa/verify/.*"))
    return dict(page.evaluate("""async (body) => {
        const csrf = JSON.parse(document.getElementById('otp_webauthn_config').textContent).csrfToken;
        const post = (url, data) => fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf}, body: JSON.stringify(data)});
        await post('/account/mfa/passkey/authentication/begin/', {});
        const r = await post('/account/mfa/passkey/authentication/complete/', body);
        return {status: r.status, body: await r.json()};
    }""", assertion))


def _audit_events(schema: str, user_pk: int) -> list[tuple[str, str, str]]:
    from django_tenants.utils import schema_context

    from audit.models import AuditEntry

    with schema_context(schema):
        return [(e.event_type, e.status, str((e.metadata or {}).get("method", "")))
                for e in AuditEntry.objects.filter(user_id=user_pk).order_by("id")]


def _credentials(schema: str, user_pk: int) -> list[Any]:
    from django_otp_webauthn.models import WebAuthnCredential
    from django_tenants.utils import schema_context

    with schema_context(schema):
        return list(WebAuthnCredential.objects.filter(user_id=user_pk, confirmed=True))


def test_passkey_enrolment_verification_and_the_wrong_side(browser: Any, mfa_web: WebServer,
                                                           admins: dict[str, tuple[str, str, int]]) -> None:
    alpha, beta = mfa_web.url("alpha.localhost"), mfa_web.url("beta.localhost")
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    expected = ("NotAllowedError", "Failed to load resource")  # the refusals this test provokes on purpose
    page.on("console", lambda m: m.type == "error" and not any(e in m.text for e in expected)
            and errors.append(f"{page.url}: {m.text[:90]}"))
    page.on("pageerror", lambda e: errors.append(str(e)))
    cdp, authenticator = _authenticator(page)
    a_schema, a_name, a_pk = admins["alpha"]

    # 1. First visit to the admin: password, then the second-factor setup page; register a passkey there.
    _sign_in(page, alpha, a_name)
    page.wait_for_url(re.compile(r".*/account/mfa/setup/\?next=/admin/$"))
    page.click("#passkey-register-button")
    page.wait_for_url(f"{alpha}/admin/")
    # The tenant's admin workspace opens on its overview (issue 17), not Django's index.
    assert page.title().startswith("Overview") and page.locator("#content-main").count() > 0
    [credential] = _credentials(a_schema, a_pk)
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert [c["rpId"] for c in stored] == ["alpha.localhost"]  # the relying party is the tenant's host
    assert ("mfa_enrolled", "success", "webauthn") in _audit_events(a_schema, a_pk)

    # 2. A new sign-in starts unverified: the admin is refused until the passkey confirms it. The assertion the
    #    browser sends is captured once (for the replay checks below), then sent for real.
    context.clear_cookies()
    _sign_in(page, alpha, a_name)
    page.wait_for_url(re.compile(r".*/account/mfa/verify/\?next=/admin/$"))
    assert page.locator("#id_token").count() == 0  # no TOTP device: only the passkey is offered
    captured: dict[str, Any] = {}

    def capture(route: Any) -> None:
        captured["body"] = route.request.post_data
        route.continue_()

    page.route("**/account/mfa/passkey/authentication/complete/**", capture)
    page.click("#passkey-verification-button")
    page.wait_for_url(f"{alpha}/admin/")
    page.unroute("**/account/mfa/passkey/authentication/complete/**")
    assert ("mfa_verified", "success", "webauthn") in _audit_events(a_schema, a_pk)
    assertion = json.loads(captured["body"])
    assert assertion["id"] and assertion["response"]["signature"]

    # 3. The same assertion again, on alpha, in a new session: its challenge was used up; refused and audited.
    replay = _ceremony_in_new_session(page, alpha, a_name, assertion)
    assert replay["status"] == 422 and replay["body"]["code"] == "invalid_authentication_response", replay
    page.goto(f"{alpha}/admin/")
    assert "/account/mfa/verify/" in page.url
    assert ("mfa_failed", "error", "webauthn") in _audit_events(a_schema, a_pk)

    # 4. Tenant beta, same browser and authenticator: beta's administrator registers a passkey of beta's own.
    b_schema, b_name, b_pk = admins["beta"]
    _sign_in(page, beta, b_name)
    page.wait_for_url(re.compile(r".*/account/mfa/setup/.*"))
    page.click("#passkey-register-button")
    page.wait_for_url(f"{beta}/admin/")
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert sorted(c["rpId"] for c in stored) == ["alpha.localhost", "beta.localhost"]

    # 5. The browser will not use alpha's passkey on beta: naming alpha as relying party is a SecurityError, and
    #    asking for alpha's credential under beta's RP ID finds nothing (NotAllowedError).
    outcome = page.evaluate("""async (credentialId) => {
        const id = Uint8Array.from(atob(credentialId.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0));
        const ask = async (rpId) => {
            try {
                await navigator.credentials.get({publicKey: {challenge: new Uint8Array(32), rpId, timeout: 3000,
                    allowCredentials: [{type: 'public-key', id}], userVerification: 'discouraged'}});
                return 'accepted';
            } catch (e) { return e.name; }
        };
        return [await ask('alpha.localhost'), await ask('beta.localhost')];
    }""", assertion["id"])
    assert outcome == ["SecurityError", "NotAllowedError"], outcome

    # 6. Beta's server refuses alpha's assertion: a new beta session, beta's ceremony begun, alpha's answer sent.
    cross = _ceremony_in_new_session(page, beta, b_name, assertion)
    assert cross["status"] == 404 and cross["body"]["code"] == "credential_not_found", cross
    page.goto(f"{beta}/admin/")
    assert "/account/mfa/verify/" in page.url  # still not through
    assert len(_credentials(b_schema, b_pk)) == 1  # beta's own; alpha's credential was never stored there
    assert ("mfa_failed", "error", "webauthn") in _audit_events(b_schema, b_pk)

    # 7. A second alpha administrator, signed in with the right password but no factor yet, does not reach the
    #    admin: every admin page sends them to enrolment, and the ceremony endpoints cannot be skipped.
    _a2_schema, a2_name, _a2_pk = admins["alpha2"]
    context.clear_cookies()
    _sign_in(page, alpha, a2_name, target="/admin/access/apikey/")
    page.wait_for_url(re.compile(r".*/account/mfa/setup/.*"))
    for path in ("/admin/", "/admin/access/apikey/", "/compliance/"):
        page.goto(f"{alpha}{path}")
        assert "/account/mfa/setup/" in page.url, path
    skipped = page.evaluate("""async (body) => {
        const csrf = JSON.parse(document.getElementById('otp_webauthn_config').textContent).csrfToken;
        const r = await fetch('/account/mfa/passkey/authentication/complete/', {method: 'POST',
            credentials: 'same-origin', headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf},
            body: JSON.stringify(body)});
        return r.status;
    }""", assertion)
    assert skipped == 400  # no ceremony was begun in this session
    page.goto(f"{alpha}/admin/")
    assert "/account/mfa/setup/" in page.url
    assert not errors, "\n".join(errors)
    assert credential.pk
    context.close()
